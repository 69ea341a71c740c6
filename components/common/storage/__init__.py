"""One storage abstraction over `file://` and `s3://` URIs.

Every stage reads and writes through a `Store`; nothing else talks to S3 directly. Keys are
'/'-separated paths relative to the store root. `write_bytes` is atomic (a reader sees the old
object or the new one, never a torn one), which is what "commit last" manifests rely on.

S3 settings come from the standard variables `AWS_ENDPOINT_URL` (none: AWS S3 itself),
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (none: ~/.aws/credentials or the role),
`AWS_REGION` (none: the AWS config file's region) and `AWS_CA_BUNDLE` (the CA that signed an
https endpoint's certificate; none: certifi's bundle); the default store URI from `CONVEYOR_STORE`.
Encryption at rest of every object written (`StoreEncryption`): `CONVEYOR_STORE_ENCRYPTION`
none | sse-s3 | sse-kms (key `CONVEYOR_STORE_KMS_KEY_ID`) | sse-c (a base64 256-bit key in
`CONVEYOR_STORE_SSE_C_KEY`, from a Secret; https only, and every read sends it too).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from components.common.errors import NotFoundError, StoreError

DEFAULT_LOCAL_STORE = ".conveyor/store"
ENCRYPTION_ENV = "CONVEYOR_STORE_ENCRYPTION"
KMS_KEY_ENV = "CONVEYOR_STORE_KMS_KEY_ID"
SSE_C_KEY_ENV = "CONVEYOR_STORE_SSE_C_KEY"
ENCRYPTION_MODES = ("none", "sse-s3", "sse-kms", "sse-c")


@dataclass(frozen=True)
class StoreEncryption:
    """Server-side encryption asked for on every object written (S3's SSE headers)."""

    mode: Literal["none", "sse-s3", "sse-kms", "sse-c"] = "none"
    kms_key_id: str | None = None
    customer_key: bytes | None = field(default=None, repr=False)  # SSE-C: never in a repr or a message

    @classmethod
    def from_env(cls) -> StoreEncryption:
        mode = (os.environ.get(ENCRYPTION_ENV) or "none").strip().lower()
        if mode not in ENCRYPTION_MODES:
            raise StoreError(f"${ENCRYPTION_ENV}={mode[:40]!r}: expected one of {', '.join(ENCRYPTION_MODES)}")
        if mode == "sse-kms":
            key_id = os.environ.get(KMS_KEY_ENV, "").strip()
            if not key_id:
                raise StoreError(f"${ENCRYPTION_ENV}=sse-kms needs the KMS key id in ${KMS_KEY_ENV}")
            return cls(mode, kms_key_id=key_id)
        if mode == "sse-c":
            try:
                key = base64.b64decode(os.environ.get(SSE_C_KEY_ENV, ""), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise StoreError(f"${ENCRYPTION_ENV}=sse-c needs ${SSE_C_KEY_ENV}: a base64 256-bit key "
                                 "(head -c 32 /dev/urandom | base64), kept in a Secret")
            return cls(mode, customer_key=key)
        return cls(mode)


def default_store_uri() -> str:
    """`CONVEYOR_STORE`, else a folder in the working directory (so a bare CLI call works)."""
    return os.environ.get("CONVEYOR_STORE") or Path(DEFAULT_LOCAL_STORE).resolve().as_uri()


class Store(ABC):
    """A place to keep bytes under '/'-separated keys."""

    uri: str

    def url(self, key: str) -> str:
        """Full URI of `key`, usable as a source or artifact reference."""
        base = self.uri if self.uri.endswith("/") else self.uri + "/"
        return base + key.lstrip("/") if key else self.uri

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write `key` only if no object has that key: True when written, False when one existed.
        Atomic against concurrent writers (an append-only log relies on it: two writers racing for
        one key never both win, and the loser's object never replaces the winner's)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (recursively), sorted."""

    @abstractmethod
    def upload(self, local_path: str, key: str) -> None: ...

    @abstractmethod
    def download(self, key: str, local_path: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def check(self) -> None:
        """Fail fast with a clear StoreError when the store cannot be used (down, bad creds)."""

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_bytes(key))
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.url(key)}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n")

    def local_path(self, key: str) -> str | None:
        """Where the object can be read in place on this machine, or None when it is remote (then
        `download` or `local_copy` it)."""
        return None

    def local_copy(self, key: str, directory: str) -> str:
        """A local path with the object's bytes (the object itself for file stores)."""
        target = os.path.join(directory, key.replace("/", "__"))
        self.download(key, target)
        return target

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer at the end of the object)."""

    def open_ranged(self, key: str, buffer_size: int = 1 << 16) -> io.BufferedReader:
        """The object as a seekable read-only file that fetches only the ranges it is asked for
        (a Parquet reader reads the footer, then the column chunks of the row groups it wants, each
        in one read: a task that reads two row groups of a remote file fetches those, not the
        object). Reads smaller than `buffer_size` are served from one read-ahead of that size."""
        return io.BufferedReader(RangedObject(self, key), buffer_size=buffer_size)


class RangedObject(io.RawIOBase):
    """A stored object read by ranges (Store.read_range); `fetched` counts the bytes read."""

    def __init__(self, store: Store, key: str):
        self.store, self.key = store, key
        self.length = store.size(key)
        self.position = 0
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.length - self.position)
        if want <= 0:
            return 0
        data = self.store.read_range(self.key, self.position, want)
        buffer[:len(data)] = data
        self.position += len(data)
        self.fetched += len(data)
        return len(data)


class FileStore(Store):
    def __init__(self, root: str):
        self.root = Path(root).resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key.lstrip("/")).resolve() if key else self.root
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"key {key!r} escapes the store root {self.uri}")
        return path

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url(key)}: no such object") from exc
        except IsADirectoryError as exc:
            raise StoreError(f"{self.url(key)}: is a folder, expected a file") from exc
        except OSError as exc:
            raise StoreError(f"{self.url(key)}: cannot read ({exc.strerror})") from exc

    @staticmethod
    def _staged(path: Path, data: bytes) -> str:
        """`data` in a temporary file beside `path`: readers never see a partial file, because
        it becomes `path` in one step (a rename or a link)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            os.replace(self._staged(path, data), path)
        except OSError as exc:
            raise StoreError(f"{self.url(key)}: cannot write ({exc.strerror})") from exc

    def create_bytes(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            tmp = self._staged(path, data)
            try:
                os.link(tmp, path)  # a hard link fails if the name exists: whole file or none, once
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        except OSError as exc:
            raise StoreError(f"{self.url(key)}: cannot write ({exc.strerror})") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight atomic write
                keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(keys)

    def upload(self, local_path: str, key: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A unique temporary name: parallel writers of one key (search trials filling the
            # same feature cache) would otherwise share it, and one would rename the other's
            # half-written copy into place.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(local_path, tmp)
                os.replace(tmp, path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"{self.url(key)}: cannot write ({exc.strerror})") from exc

    def download(self, key: str, local_path: str) -> None:
        try:
            shutil.copyfile(self._path(key), local_path)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url(key)}: no such object") from exc

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def local_copy(self, key: str, directory: str) -> str:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"{self.url(key)}: no such object")
        return str(path)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url(key)}: no such object") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url(key)}: no such object") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {self.uri}: cannot create folder ({exc.strerror})") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.uri}: folder is not writable")


def _s3_store(bucket: str, prefix: str = "") -> Store:
    # lazy: the MinIO client and urllib3, only for an s3:// store
    from components.common.storage.s3 import S3Store

    return S3Store(bucket, prefix)


def open_store(uri: str | None = None) -> Store:
    """The store rooted at `uri` (default: `default_store_uri()`)."""
    uri = uri or default_store_uri()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: an S3 store URI needs a bucket, like s3://conveyor")
        return _s3_store(parsed.netloc, parsed.path)
    if parsed.scheme in ("file", "") or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        if StoreEncryption.from_env().mode != "none":
            raise StoreError(f"{uri}: ${ENCRYPTION_ENV} asks for server-side encryption, which only an S3 store "
                             "gives; use an encrypted disk for a folder store, or unset it")
        return FileStore(parsed.path if parsed.scheme == "file" else uri)
    raise StoreError(f"{uri}: unsupported store scheme {parsed.scheme!r} (expected file:// or s3://)")


def locate(uri: str) -> tuple[Store, str]:
    """Split any file or S3 URI into (store, key) so sources can be read through a Store."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: expected s3://bucket/key")
        return _s3_store(parsed.netloc), parsed.path.lstrip("/")
    if parsed.scheme in ("file", ""):
        path = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
        return FileStore("/"), path.as_posix().lstrip("/")
    raise StoreError(f"{uri}: unsupported scheme {parsed.scheme!r} (expected a path, file:// or s3://)")


def main(argv: list[str]) -> int:
    """`python -m components.common.storage check URI`: the store answers with this environment's
    credentials (the chart's `helm test` runs it with the S3 Secret); one line either way."""
    import argparse  # lazy: only the `check` entry point parses arguments

    parser = argparse.ArgumentParser(prog="python -m components.common.storage")
    parser.add_argument("action", choices=["check"], help="check: the store answers (bucket exists, credentials work)")
    parser.add_argument("uri", help="store URI, s3://bucket[/prefix] or a folder")
    args = parser.parse_args(argv)
    store = open_store(args.uri)
    store.check()
    print(f"store {store.uri} answers" + (f" at {store.endpoint}" if hasattr(store, "endpoint") else ""))
    return 0
