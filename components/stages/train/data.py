"""Featurized splits as tensors, and deterministic mini-batches over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch


@dataclass
class Bags:
    """A split in CSR layout: document i has ids[offsets[i]:offsets[i+1]] and label labels[i]."""

    ids: torch.Tensor      # int64, all documents' ids back to back
    offsets: torch.Tensor  # int64, len = documents + 1 (the last entry is len(ids))
    labels: torch.Tensor   # int64

    def __len__(self) -> int:
        return self.labels.numel()

    @classmethod
    def from_table(cls, table: pa.Table) -> Bags:
        ids_col = table.column("ids").combine_chunks()
        if isinstance(ids_col, pa.ChunkedArray):
            ids_col = ids_col.chunk(0) if ids_col.num_chunks else pa.array([], pa.list_(pa.int32()))
        offsets = np.asarray(ids_col.offsets, dtype=np.int64)
        offsets = offsets - offsets[0]
        flat = np.asarray(pc.list_flatten(ids_col), dtype=np.int64)
        labels = np.asarray(table.column("label_id"), dtype=np.int64)
        return cls(torch.from_numpy(flat.copy()), torch.from_numpy(offsets.copy()), torch.from_numpy(labels.copy()))

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, offsets, labels) of the documents in `index`, as an EmbeddingBag input."""
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        new_offsets = torch.zeros_like(lengths)
        torch.cumsum(lengths[:-1], dim=0, out=new_offsets[1:])
        total = int(lengths.sum().item())
        # Vectorized gather of every selected bag: output position + (source start - output start).
        gather = torch.arange(total) + torch.repeat_interleave(starts - new_offsets, lengths, output_size=total)
        return self.ids[gather], new_offsets, self.labels[index]

    def padded_to(self, rows: int) -> Bags:
        """These documents followed by their first `rows - len(self)` again: a rank's shard made as
        long as the longest one (what torch's DistributedSampler does), so ranks step in lockstep."""
        missing = rows - len(self)
        if missing <= 0:
            return self
        if len(self) < missing:
            raise ValueError(f"a shard of {len(self)} rows cannot be padded to {rows}: the training split has "
                             "fewer rows than processes")
        ids, offsets, labels = self.batch(torch.arange(missing))
        return Bags(torch.cat([self.ids, ids]), torch.cat([self.offsets, offsets[1:] + self.offsets[-1],
                                                           offsets.new_tensor([self.ids.numel() + ids.numel()])]),
                    torch.cat([self.labels, labels]))

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Mini-batches in a random order (one gather for the whole epoch, then contiguous slices)."""
        bags = self
        if generator is not None:
            ids, starts, labels = self.batch(torch.randperm(len(self), generator=generator))
            bags = Bags(ids, torch.cat([starts, starts.new_tensor([ids.numel()])]), labels)
        for start in range(0, len(bags), batch_size):
            stop = min(start + batch_size, len(bags))
            first, last = int(bags.offsets[start]), int(bags.offsets[stop])
            yield bags.ids[first:last], bags.offsets[start:stop] - first, bags.labels[start:stop]
