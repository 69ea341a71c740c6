"""Immutable, content-addressed dataset versions in the store.

Layout under the store root:

    datasets/<name>/<version>/part-00000.parquet   accepted rows added by this version
    datasets/<name>/<version>/quarantine.parquet   rejected rows with reasons
    datasets/<name>/<version>/manifest.json        written last: no manifest, no version
    datasets/<name>/refs/latest.json               movable pointer to the newest version

A version is a snapshot: its manifest lists its own parts and, by reference, every part of its
parent (parts are immutable and checksummed, so sharing them is safe and copies nothing).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import audit
from components.common.errors import IntegrityError, NotFoundError
from components.common.hashing import sha256_of_file, sha256_of_value
from components.common.layout import check_name, dataset_prefix, latest_key, manifest_key, version_prefix
from components.common.shards import ROW_GROUP_ROWS
from components.common.storage import Store
from components.dataset.manifest import Part
from components.dataset.schema import ACCEPTED_SCHEMA, ContentDigest, content_keys, keys_from_doc_ids

MANIFEST_FORMAT = 1
def schema_fingerprint(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def version_id(digest: str, schema: pa.Schema, cleaning: dict[str, Any]) -> str:
    return sha256_of_value({"content": digest, "schema": schema_fingerprint(schema),
                            "cleaning": cleaning})[:16]


@dataclass(frozen=True)
class VersionRef:
    dataset: str
    version: str
    manifest: dict[str, Any]

    @functools.cached_property
    def parts(self) -> list[Part]:
        """The manifest's parts, validated once per reference."""
        where = f"dataset {self.dataset}@{self.version} manifest"
        return [Part.of(p, f"{where} parts[{i}]") for i, p in enumerate(self.manifest["parts"])]


def read_manifest(store: Store, name: str, version: str) -> dict[str, Any]:
    try:
        return store.read_json(manifest_key(name, version))
    except NotFoundError as exc:
        raise NotFoundError(f"dataset {name!r} has no version {version!r} in {store.uri}") from exc


def resolve(store: Store, name: str, version: str | None = "latest") -> VersionRef:
    """A version by id, or the newest one for 'latest'/None. NotFoundError (one message for every
    stage) when the dataset has no versions or not this one."""
    if version in (None, "latest"):
        try:
            pointer = store.read_json(latest_key(name))
        except NotFoundError:
            versions = list_versions(store, name)
            if not versions:
                raise NotFoundError(f"dataset {name!r} has no versions in {store.uri}") from None
            pointer = {"version": versions[-1]["version"]}
        version = pointer["version"]
    return VersionRef(name, version, read_manifest(store, name, version))


def resolve_parent(store: Store, name: str, version: str | None) -> VersionRef | None:
    """The version a new ingest builds on: None for the first version of a dataset ('latest' of a
    dataset with none), otherwise resolve's answer (an absent named version is an error)."""
    if version in (None, "latest") and not store.exists(latest_key(name)) and not list_versions(store, name):
        return None
    return resolve(store, name, version)


def list_versions(store: Store, name: str) -> list[dict[str, Any]]:
    """Committed versions (those with a manifest), oldest first."""
    prefix = dataset_prefix(name) + "/"
    manifests = [k for k in store.list(prefix) if k.endswith("/manifest.json")]
    found = [store.read_json(k) for k in manifests]
    return sorted(found, key=lambda m: (m["created_at"], m["version"]))


def _local_parts(store: Store, ref: VersionRef, verify: bool, workdir: str | None) -> Iterator[str]:
    """Each part of a version copied to a local file (checksum verified by default), one at a time."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for part in ref.parts:
            key = f"{dataset_prefix(ref.dataset)}/{part.path}"
            local = store.local_copy(key, tmp)
            if verify:
                actual = sha256_of_file(local)
                if actual != part.sha256:
                    raise IntegrityError(f"{store.url(key)}: sha256 {actual[:12]}… does not match the "
                                         f"manifest's {part.sha256[:12]}…; the part was modified")
            yield local
            if os.path.dirname(os.path.abspath(local)) == os.path.abspath(tmp):  # a copy, not a file store's own
                os.remove(local)


def read_parts(store: Store, ref: VersionRef, columns: list[str] | None = None, verify: bool = True,
               workdir: str | None = None):
    """Yield each part of a version as an Arrow table (checksums verified by default)."""
    for local in _local_parts(store, ref, verify, workdir):
        yield pq.read_table(local, columns=columns)


def read_batches(store: Store, ref: VersionRef, columns: list[str] | None = None, batch_rows: int = ROW_GROUP_ROWS,
                 verify: bool = True, workdir: str | None = None) -> Iterator[pa.RecordBatch]:
    """A version's rows in order, `batch_rows` at a time: memory bounded by one batch and one part's
    local copy on disk, whatever the version's size."""
    for local in _local_parts(store, ref, verify, workdir):
        yield from pq.ParquetFile(local).iter_batches(batch_size=batch_rows, columns=columns)


def read_table(store: Store, ref: VersionRef, columns: list[str] | None = None) -> pa.Table:
    tables = list(read_parts(store, ref, columns))
    if not tables:
        fields = ACCEPTED_SCHEMA if columns is None else [ACCEPTED_SCHEMA.field(c) for c in columns]
        schema = pa.schema(fields)
        return schema.empty_table()
    return pa.concat_tables(tables)


def parent_keys(store: Store, ref: VersionRef | None, digest: ContentDigest) -> Iterator[np.ndarray]:
    """The dedup keys of every row in a version, one part at a time, adding each part's content to
    `digest` as it goes: the parent side of dedup and of the child's id."""
    if ref is None:
        return
    for table in read_parts(store, ref, columns=["doc_id", "label"]):
        keys = keys_from_doc_ids(table.column("doc_id").combine_chunks())
        digest.add(content_keys(keys, table.column("label").combine_chunks()))
        yield keys


def parent_digest(store: Store, ref: VersionRef | None) -> ContentDigest:
    """The content digest of a version's rows (where a child's digest starts) when its keys are not
    needed for dedup."""
    digest = ContentDigest()
    for _ in parent_keys(store, ref, digest):
        pass
    return digest


class LocalFile(NamedTuple):
    """A Parquet file of a version being made, written on local disk before `commit` uploads it:
    a part (`part-NNNNN.parquet`) or the quarantine (`quarantine.parquet`), as its manifest entry
    will describe it."""

    path: str  # on local disk
    rows: int
    sha256: str
    bytes: int

    def entry(self, path: str) -> Part:
        """How the manifest lists it, once uploaded to `path` (under the dataset's prefix)."""
        return Part(path=path, rows=self.rows, sha256=self.sha256, bytes=self.bytes)


def commit(store: Store, name: str, version: str, local_parts: list[LocalFile],
           local_quarantine: LocalFile | None, manifest: dict[str, Any]) -> None:
    """Upload parts, then the manifest (the commit point), then move the `latest` pointer.

    A crash before the manifest leaves only unreferenced objects under the version prefix:
    readers never see the version.
    """
    if (manifest["dataset"], manifest["version"]) != (name, version):
        raise ValueError(f"the manifest is {manifest['dataset']}@{manifest['version']}, not {name}@{version}")
    prefix = version_prefix(name, version)
    for i, part in enumerate(local_parts):
        store.upload(part.path, f"{prefix}/part-{i:05d}.parquet")
    if local_quarantine is not None:
        store.upload(local_quarantine.path, f"{prefix}/quarantine.parquet")
    publish(store, manifest)


def publish(store: Store, manifest: dict[str, Any]) -> None:
    """The commit point of a version whose parts are in place (both ingest engines end here): the
    manifest, then the `latest` pointer, then the audit entry."""
    name, version = manifest["dataset"], manifest["version"]
    store.write_json(manifest_key(name, version), manifest)
    store.write_json(latest_key(name), {"version": version, "updated_at": manifest["created_at"]})
    audit.append(store, "dataset_version_committed", {"dataset": name, "version": version},
                 {"parent": manifest.get("parent"), "rows": manifest.get("rows"),
                  "created_at": manifest.get("created_at")})


class NewVersion:
    """One dataset version being made, in the order both ingest engines make it:

    1. the dataset's name checked and the store reached before anything is read; the parent
       resolved when first asked for (after the engine has found its sources, as before);
    2. the child's content digest started from the parent's rows (`parent_keys` when the engine
       dedups against the parent's keys, else `parent_digest`), the new rows merged in by the engine;
    3. the id sealed from the digest, the schema and the cleaning identity (`seal`);
    4. a version already stored under that id found, not made again (`existing`);
    5. the parts uploaded, then the manifest (the commit point), then `latest` and the audit entry
       (`commit` for files written on local disk; an engine that writes its parts where they belong
       calls `publish` once they are all there, as the Spark writer's driver-side commit does).
    """

    def __init__(self, store: Store, dataset: str, parent: str | None):
        check_name(dataset)
        store.check()  # fail fast (store down, bad credentials) before reading anything
        self.store, self.dataset, self._parent = store, dataset, parent
        self.version: str | None = None

    @functools.cached_property
    def parent(self) -> VersionRef | None:
        return resolve_parent(self.store, self.dataset, self._parent) if self._parent else None

    def parent_keys(self, digest: ContentDigest) -> Iterator[np.ndarray]:
        """The parent's dedup keys, part by part, adding its rows to `digest` as they go."""
        return parent_keys(self.store, self.parent, digest)

    def parent_digest(self) -> ContentDigest:
        return parent_digest(self.store, self.parent)

    def seal(self, digest: ContentDigest, schema: pa.Schema, cleaning: dict[str, Any]) -> str:
        self.version = version_id(digest.hexdigest(), schema, cleaning)
        return self.version

    def existing(self) -> dict[str, Any] | None:
        """The manifest of the version with the sealed id, when the store has it already."""
        if not self.store.exists(manifest_key(self.dataset, self.version)):
            return None
        return read_manifest(self.store, self.dataset, self.version)

    def commit(self, local_parts: list[LocalFile], local_quarantine: LocalFile | None,
               manifest: dict[str, Any]) -> None:
        commit(self.store, self.dataset, self.version, local_parts, local_quarantine, manifest)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
