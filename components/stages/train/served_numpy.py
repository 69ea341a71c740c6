"""The embedding_bag family's served form without torch: reading `weights.pt` and scoring in numpy.

A predictor worker that imports torch holds about 180 MiB more and starts about a second later,
for a model of a few MiB that it already scores in numpy (`FoldedBagClassifier.logits_numpy`).
So the registry loads that form here, and only other forms (the CNN, weights from before the
compact form) go through torch.

`read_state` reads what `torch.save` writes for a flat dict of CPU tensors: a zip holding a pickle
(`data.pkl`) whose tensors point at raw little-endian storages (`data/<key>`). Its unpickler knows
four kinds of global (the tensor rebuild, OrderedDict, the typed storages and nothing else), the
same ones torch's own `weights_only` loader accepts for such a file. Anything else raises
`UnsupportedState`, and the caller falls back to `torch.load`.
"""

from __future__ import annotations

import io
import math
import pickle  # nosec B403: a restricted Unpickler (find_class allows four names), after the sha256 check
import zipfile
from collections import OrderedDict

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsupportedState(ValueError):
    """Not a file this reader knows: the caller loads it with torch instead."""


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_rest) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2: a view of the storage (sizes and strides in elements), copied."""
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    if any(s == 0 for s in size):
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or last >= len(storage) or any(s < 0 for s in stride):
        raise UnsupportedState(f"a tensor reaches outside its storage (offset {offset}, size {size}, stride {stride})")
    if math.prod(size) > len(storage):  # a broadcast view (stride 0): its copy could be any size
        raise UnsupportedState(f"a tensor of {math.prod(size)} values over a storage of {len(storage)}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride], writeable=False)
    return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):  # nosec B301: find_class below refuses every other global
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.root = archive, root
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise UnsupportedState(f"weights.pt refers to {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise UnsupportedState(f"weights.pt has a storage reference this reader does not know: {pid!r}")
        _, kind, key, location, numel = pid
        if location != "cpu":
            raise UnsupportedState(f"weights.pt has a storage on {location!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            values = np.frombuffer(raw, dtype=np.dtype(kind.dtype).newbyteorder("<"))
            if len(values) != numel:
                raise UnsupportedState(f"storage {key}: {len(values)} values, the pickle says {numel}")
            self.storages[key] = values
        return self.storages[key]


def read_state(data: bytes) -> dict[str, np.ndarray]:
    """A `torch.save`d dict of CPU tensors as numpy arrays (native byte order, contiguous)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise UnsupportedState("weights.pt is not a zip archive (torch's legacy format)") from exc
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise UnsupportedState("weights.pt has no single <archive>/data.pkl")
    root = pickles[0].split("/")[0]
    if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder") != b"little":
        raise UnsupportedState("weights.pt was written big-endian")
    try:
        state = _Unpickler(archive.read(pickles[0]), archive, root).load()
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
        raise UnsupportedState(f"weights.pt: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise UnsupportedState("weights.pt does not hold a flat dict of tensors")
    return {k: v.astype(v.dtype.newbyteorder("="), copy=False) for k, v in state.items()}


def folded_bag_arrays(num_ids: int, rows: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The embedding_bag served form's lookup: table id -> compact row (the zero row last for ids no
    training document used), and [class scores | 1] per row with that zero row, as float32."""
    remap = np.full(num_ids, len(rows), dtype=np.int64)
    remap[rows.astype(np.int64)] = np.arange(len(rows))
    extended = np.zeros((len(rows) + 1, table.shape[1] + 1), dtype=table.dtype)
    extended[:-1, :-1] = table
    extended[:-1, -1] = 1
    return remap, extended


def folded_bag_logits(remap: np.ndarray, table64: np.ndarray, bias: np.ndarray, ids: np.ndarray,
                      offsets: np.ndarray) -> np.ndarray:
    """The mean of each bag's seen rows' class scores, plus the bias (see FoldedBagClassifier):
    sums in float64, so that an unseen id, which adds zeros, cannot regroup the additions enough to
    change the float32 result."""
    if not len(offsets):
        return np.empty((0, bias.shape[0]), dtype=np.float32)
    unseen = table64.shape[0] - 1  # the zero row: no class score, no count
    rows = np.append(remap[ids], unseen)  # so that no offset points past the end
    sums = np.add.reduceat(table64[rows], offsets, axis=0)
    ends = np.append(offsets[1:], len(ids))
    sums[ends == offsets] = 0  # an empty bag (reduceat would give the next bag's first row)
    return (sums[:, :-1] / np.maximum(sums[:, -1:], 1)).astype(np.float32) + bias


class FoldedBagScorer:
    """FoldedBagClassifier's scoring path alone, built from `read_state`'s arrays: no torch."""

    def __init__(self, num_ids: int, rows: np.ndarray, table: np.ndarray, bias: np.ndarray):
        self.remap, extended = folded_bag_arrays(num_ids, rows, table)
        self.table64 = extended.astype(np.float64)
        self.bias = bias

    def logits_numpy(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return folded_bag_logits(self.remap, self.table64, self.bias, ids, offsets)
