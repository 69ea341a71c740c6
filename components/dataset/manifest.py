"""The typed entries of a dataset version's manifest that cross step boundaries.

File layout: `datasets/<name>/<version>/manifest.json` is one JSON object (indent 2). Its `parts`
list names every Parquet file of the version's accepted rows, the parent's first (by reference, each
marked `inherited_from` the version that wrote it), then this version's own; its `quarantine` names
the one file of rejected rows, or is null. Each is a `Part`:

    {"path": "<version>/part-00000.parquet", "rows": 1234, "sha256": "<64 hex>", "bytes": 56789}
    {"path": "<parent>/part-00000.parquet", ..., "inherited_from": "<parent>"}

`path` is relative to the dataset's prefix (`datasets/<name>/`), so a child lists its parent's files
without copying them; `sha256` is the file's checksum, verified on every read.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.common.config import first_validation_error
from components.common.errors import IntegrityError

_VERSION_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/(part-\d{5,}|quarantine)\.parquet$")


class Part(BaseModel):
    """One Parquet file of a version: where it is, how many rows it holds, and its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    inherited_from: str | None = None

    @field_validator("path")
    @classmethod
    def _under_a_version(cls, path: str) -> str:
        # a manifest names files of its dataset only: no absolute path, no `..` out of the prefix
        if not _VERSION_FILE.match(path):
            raise ValueError(f"{path!r} is not <version>/part-NNNNN.parquet or <version>/quarantine.parquet")
        return path

    def entry(self) -> dict[str, Any]:
        """As the manifest writes it (`inherited_from` only where it applies)."""
        return self.model_dump(exclude_none=True)

    def inherited(self, parent_version: str) -> Part:
        """This part as a child lists it: still marked with the version that wrote it."""
        return self if self.inherited_from else self.model_copy(update={"inherited_from": parent_version})

    @classmethod
    def of(cls, entry: Any, where: str) -> Part:
        """A manifest's entry, or an IntegrityError naming `where` and the first bad field."""
        if not isinstance(entry, dict):
            raise IntegrityError(f"{where}: expected an object with path, rows, sha256 and bytes, "
                                 f"not {type(entry).__name__}")
        try:
            return cls.model_validate(entry)
        except ValidationError as exc:
            raise IntegrityError(f"{where}.{first_validation_error(exc)}") from None
