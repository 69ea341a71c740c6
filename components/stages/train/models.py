"""Model families over the featurizer's token ids, chosen by `TrainParams.family`, and their
compact served form.

Hashed ids that no training document used (`seen` is False) keep their initial values, so they
would move a prediction at random: in eval mode an unseen id is dropped from the bag (the
embedding-bag model answers as if the word were absent) or read as padding (the CNN's zero row).

What a run writes and the registry serves is `export_state`'s compact form, exact in eval mode:
only the seen rows, and for the embedding-bag model the classifier folded into them (the mean of
the rows followed by a linear layer is the mean of each row's class scores, so each row becomes
`num_classes` numbers instead of `embed_dim`). `served_model` builds the module that answers from it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from components.stages.train.served_numpy import folded_bag_arrays, folded_bag_logits


class EmbeddingBagClassifier(nn.Module):
    """fastText-style: the mean of the document's n-gram embeddings, then a linear layer."""

    def __init__(self, num_ids: int, num_classes: int, embed_dim: int = 64, dropout: float = 0.0,
                 sparse: bool = True):
        super().__init__()
        # Sparse gradients: a step touches only the rows its batch used, not the whole table.
        self.embedding = nn.EmbeddingBag(num_ids, embed_dim, mode="mean", sparse=sparse)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)
        nn.init.uniform_(self.embedding.weight, -0.5 / embed_dim, 0.5 / embed_dim)
        self.register_buffer("seen", torch.ones(num_ids, dtype=torch.bool))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if not self.training:
            ids, offsets = keep_in_bags(ids, offsets, self.seen[ids])
        return self.classifier(self.dropout(self.embedding(ids, offsets)))


class CNNClassifier(nn.Module):
    """1-D convolutions of several widths over the token sequence, max-pooled over time."""

    def __init__(self, num_ids: int, num_classes: int, embed_dim: int = 64, channels: int = 64,
                 kernel_sizes: tuple[int, ...] = (2, 3, 4), dropout: float = 0.0, max_len: int = 400,
                 sparse: bool = True):
        super().__init__()
        self.max_len = max_len
        self.pad_id = num_ids  # one extra row, never trained, for padding
        self.embedding = nn.Embedding(num_ids + 1, embed_dim, padding_idx=self.pad_id, sparse=sparse)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k, padding=k - 1) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels * len(kernel_sizes), num_classes)
        # one entry per row, the padding row's False: an id read as padding stays padding
        seen = torch.ones(num_ids + 1, dtype=torch.bool)
        seen[self.pad_id] = False
        self.register_buffer("seen", seen)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if not self.training:
            ids = torch.where(self.seen[ids], ids, self.pad_id)
        padded = pad_bags(ids, offsets, self.max_len, self.pad_id)
        x = self.embedding(padded).transpose(1, 2)  # (batch, embed, time)
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


def keep_in_bags(ids: torch.Tensor, offsets: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (ids, offsets) with only the ids where `keep` is True; every bag stays (possibly empty)."""
    n = offsets.numel()
    if bool(keep.all()):
        return ids, offsets
    ends = torch.cat([offsets[1:], offsets.new_tensor([ids.numel()])])
    bag = torch.repeat_interleave(torch.arange(n, device=ids.device), ends - offsets, output_size=ids.numel())
    counts = torch.bincount(bag[keep], minlength=n)
    kept_offsets = torch.zeros_like(offsets)
    torch.cumsum(counts[:-1], dim=0, out=kept_offsets[1:])
    return ids[keep], kept_offsets


def pad_bags(ids: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_id: int) -> torch.Tensor:
    """CSR (ids, offsets) -> (batch, length) padded ids, each bag cut to its first max_len ids."""
    n = offsets.numel()
    ends = torch.cat([offsets[1:], offsets.new_tensor([ids.numel()])])
    lengths = (ends - offsets).clamp(max=max_len)
    width = int(lengths.max().item()) if n else 1
    out = ids.new_full((n, max(width, 1)), pad_id)
    positions = torch.arange(width, device=ids.device).unsqueeze(0)
    mask = positions < lengths.unsqueeze(1)
    gather = (offsets.unsqueeze(1) + positions)[mask]
    out[mask] = ids[gather]
    return out


FAMILIES = {"embedding_bag": EmbeddingBagClassifier, "cnn": CNNClassifier}
# The training parameters that shape the network (the rest only steer optimization).
ARCHITECTURE_FIELDS = ("embed_dim", "dropout", "channels", "kernel_sizes", "max_len")


def build_from_params(params: dict, num_ids: int, num_classes: int, sparse_gradients: bool = True) -> nn.Module:
    """The model a set of training parameters (TrainParams as a dict) describes."""
    return build_model(params["family"], num_ids, num_classes, sparse_gradients,
                       **{k: params[k] for k in ARCHITECTURE_FIELDS})


def build_model(family: str, num_ids: int, num_classes: int, sparse_gradients: bool = True, **params) -> nn.Module:
    """sparse_gradients=False: dense embedding gradients (NCCL cannot all-reduce sparse ones); the
    weights and their layout are the same either way."""
    if family == "embedding_bag":
        return EmbeddingBagClassifier(num_ids, num_classes, embed_dim=params["embed_dim"],
                                      dropout=params["dropout"], sparse=sparse_gradients)
    if family == "cnn":
        return CNNClassifier(num_ids, num_classes, embed_dim=params["embed_dim"], channels=params["channels"],
                             kernel_sizes=tuple(params["kernel_sizes"]), dropout=params["dropout"],
                             max_len=params["max_len"], sparse=sparse_gradients)
    raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")


def mark_seen(model: nn.Module, seen: torch.Tensor) -> None:
    """The ids training updates (every id of the training split): the rest are unseen at eval."""
    model.seen[:seen.numel()] = seen.to(model.seen.device)


def export_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The compact served form of a trained model (see the module docstring)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    rows = torch.nonzero(state.pop("seen")).flatten()  # the CNN's padding entry is never seen
    if isinstance(model, EmbeddingBagClassifier):
        weight, bias = state["classifier.weight"].double(), state["classifier.bias"]
        table = (state["embedding.weight"][rows].double() @ weight.T).float()
        return {"rows": rows.to(torch.int32), "table": table.contiguous(), "bias": bias.clone()}
    embedding = state.pop("embedding.weight")
    compact = torch.cat([embedding[rows], embedding[-1:]])  # the padding row (zero) last
    return {"rows": rows.to(torch.int32), "embedding.weight": compact, **state}


class FoldedBagClassifier(nn.Module):
    """EmbeddingBagClassifier's served form: the mean of each seen id's class scores, plus the bias."""

    def __init__(self, num_ids: int, rows: torch.Tensor, table: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        # One summing bag over [class scores | 1] with a zero row last for unseen ids: the sums and
        # the count of seen ids in one lookup, then their ratio (the mean over seen ids only).
        remap, extended = folded_bag_arrays(num_ids, rows.numpy(), table.numpy())
        self.register_buffer("remap", torch.from_numpy(remap))
        self.bag = nn.EmbeddingBag.from_pretrained(torch.from_numpy(extended), freeze=True, mode="sum")
        self.register_buffer("bias", bias)
        self._numpy: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see logits_numpy

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        sums = self.bag(self.remap[ids], offsets)
        return sums[:, :-1] / sums[:, -1:].clamp(min=1) + self.bias

    def _load_from_state_dict(self, *args, **kwargs):
        self._numpy = None  # the float64 copy follows new weights
        super()._load_from_state_dict(*args, **kwargs)

    def logits_numpy(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """forward() in numpy, for the scoring path: a request of one text spends ~150 us in torch's
        dispatcher when it runs between HTTP requests, against ~100 us here (bench/README.md).
        Sums are float64: numpy sums a bag pairwise, so in float32 an id with no score (an unseen
        word) would still move the result by regrouping the additions; float64 has 29 bits to spare,
        so the regrouping does not reach the float32 result (tests/unit/stages/train/test_models.py: an unseen
        word leaves a trained model's answer bit-identical). Against torch's float32 sums: at most
        4.8e-7 apart on 12,800 random bags of up to 400 ids (measured 2026-12-07)."""
        if self._numpy is None:  # float64 copy of the table, made once (3 numbers per seen row)
            self._numpy = (self.remap.numpy(), self.bag.weight.numpy().astype(np.float64), self.bias.numpy())
        return folded_bag_logits(*self._numpy, ids, offsets)


class CompactCNNClassifier(nn.Module):
    """CNNClassifier's served form: only the seen rows (unseen ids read the zero padding row)."""

    def __init__(self, num_ids: int, inner: CNNClassifier, rows: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("remap", _remap(num_ids, rows, inner.pad_id))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.inner(self.remap[ids], offsets)


def _remap(num_ids: int, rows: torch.Tensor, missing: int) -> torch.Tensor:
    """Table id -> compact row (int64, what an embedding lookup takes), `missing` for unused ids."""
    remap = torch.full((num_ids,), missing, dtype=torch.int64)
    remap[rows.long()] = torch.arange(rows.numel())
    return remap


def served_model(params: dict, num_ids: int, num_classes: int, state: dict[str, torch.Tensor]) -> nn.Module:
    """The eval-mode module that answers from `export_state`'s form (TrainParams as a dict). Weights
    written before that form (the whole training module's state_dict) still load, as they answered
    then: every row of the table, unseen ones included."""
    if "rows" not in state:
        legacy = build_from_params(params, num_ids, num_classes)
        missing, unexpected = legacy.load_state_dict(state, strict=False)
        if set(missing) != {"seen"} or unexpected:
            raise ValueError(f"the weights fit neither model form (missing {missing}, unexpected {unexpected})")
        return legacy.eval()
    rows = state["rows"]
    if params["family"] == "embedding_bag":
        if set(state) != {"rows", "table", "bias"} or state["table"].shape[1] != num_classes:
            raise ValueError("the weights are not an exported embedding_bag model for "
                             f"{num_classes} classes (keys {sorted(state)})")
        model: nn.Module = FoldedBagClassifier(num_ids, rows, state["table"], state["bias"])
    else:
        inner = build_from_params(params, rows.numel(), num_classes)  # every row seen; the remap pads the rest
        inner.load_state_dict({k: v for k, v in state.items() if k != "rows"} | {"seen": inner.seen})
        model = CompactCNNClassifier(num_ids, inner, rows)
    return model.eval()
