"""Model families over the featurizer's token ids, chosen by `TrainParams.family`."""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
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

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        padded = pad_bags(ids, offsets, self.max_len, self.pad_id)
        x = self.embedding(padded).transpose(1, 2)  # (batch, embed, time)
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


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
