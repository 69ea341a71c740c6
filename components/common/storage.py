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
import re
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

    def write_sse(self):
        """minio's Sse object for a PUT (None: no header)."""
        # lazy: only the S3 backend needs it
        from minio.sse import SseCustomerKey, SseKMS, SseS3

        if self.mode == "sse-s3":
            return SseS3()
        if self.mode == "sse-kms":
            return SseKMS(self.kms_key_id, {})
        if self.mode == "sse-c":
            return SseCustomerKey(self.customer_key)
        return None

    def read_ssec(self):
        """SSE-C objects are read with the same key; the other modes need nothing on a read."""
        return self.write_sse() if self.mode == "sse-c" else None


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


def _tls_settings() -> dict[str, str]:
    """Verify an https endpoint against $AWS_CA_BUNDLE (as the AWS CLI and SDKs do), else the system
    bundle minio uses ($SSL_CERT_FILE, else certifi's)."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        if not os.path.isfile(bundle):
            raise StoreError(f"AWS_CA_BUNDLE={bundle}: no such file (the CA certificate that signed the S3 "
                             "endpoint's certificate, PEM)")
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}
    import certifi  # lazy: only an https S3 endpoint needs it

    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": os.environ.get("SSL_CERT_FILE") or certifi.where()}


def _aws_config_region() -> str | None:
    """The region of the AWS CLI config's profile ($AWS_PROFILE, else default), as the AWS tools read it."""
    import configparser  # lazy: only an S3 store without an endpoint or AWS_REGION reads it

    path = Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    profile = os.environ.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return None
    section = profile if profile == "default" else f"profile {profile}"
    return parser.get(section, "region", fallback=None)


def _s3_settings() -> tuple[str, bool, str | None, str | None, str]:
    """(host, https, access key, secret key, region). With no AWS_ENDPOINT_URL the store is AWS S3
    itself: https://s3.<region>.amazonaws.com, the region from AWS_REGION / AWS_DEFAULT_REGION, else
    the AWS config file's profile, else us-east-1. Keys from AWS_ACCESS_KEY_ID/SECRET, else (None)
    the standard chain: ~/.aws/credentials, then the instance's or pod's role."""
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or _aws_config_region()
              or "us-east-1")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        endpoint = "https://s3.amazonaws.com" if region == "us-east-1" else f"https://s3.{region}.amazonaws.com"
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parsed.hostname:
        raise StoreError(f"AWS_ENDPOINT_URL={endpoint!r} is not a URL like http://host:port")
    host = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
    return (host, parsed.scheme == "https", os.environ.get("AWS_ACCESS_KEY_ID"),
            os.environ.get("AWS_SECRET_ACCESS_KEY"), region)


class S3Store(Store):
    """An S3 bucket (optionally a prefix inside it) through the MinIO client."""

    _CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                         "InvalidToken", "ExpiredToken"}

    def __init__(self, bucket: str, prefix: str = ""):
        # lazy: only the S3 backend needs it
        import urllib3

        # lazy: only the S3 backend needs it
        from minio import Minio

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        host, secure, access_key, secret_key, region = _s3_settings()
        self.endpoint = ("https://" if secure else "http://") + host
        self.encryption = StoreEncryption.from_env()
        if self.encryption.mode in ("sse-c", "sse-kms") and not secure:
            # SSE-C sends the key with every request; S3 refuses SSE-KMS over plain HTTP as well
            raise StoreError(f"{self.endpoint}: {self.encryption.mode} needs an https endpoint "
                             "(AWS_ENDPOINT_URL=https://...)")
        # Few, fast retries: a store that is down should fail the command in seconds, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=8, **(_tls_settings() if secure else {}),
        )
        credentials = None
        if not access_key:  # AWS's own chain: the credentials file, then the instance's or pod's role
            # lazy: only the S3 backend needs it
            from minio.credentials import AWSConfigProvider, ChainedProvider, IamAwsProvider

            credentials = ChainedProvider([AWSConfigProvider(profile=os.environ.get("AWS_PROFILE")),
                                           IamAwsProvider()])
        self.region = region
        self.client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=http, credentials=credentials)

    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _error(self, exc: Exception, key: str) -> StoreError:
        # lazy: only the S3 backend needs it
        from minio.error import S3Error

        where = self.url(key)
        if isinstance(exc, S3Error):
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return NotFoundError(f"{where}: no such object")
            if exc.code == "NoSuchBucket":
                return StoreError(f"{where}: bucket {self.bucket!r} does not exist at {self.endpoint}")
            if exc.code in ("InvalidArgument", "InvalidRequest") and self.encryption.mode != "none":
                return StoreError(f"{where}: the server refused {self.encryption.mode} ({exc.code}: "
                                  f"{exc.message[:200]}); check ${ENCRYPTION_ENV}, or the key an SSE-C object "
                                  "was written with")
            if exc.code in self._CREDENTIAL_CODES:
                return StoreError(f"{where}: credentials refused by {self.endpoint} ({exc.code}); "
                                  "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
            return StoreError(f"{where}: S3 error {exc.code}: {exc.message}")
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return StoreError(f"{where}: the TLS certificate of {self.endpoint} is not trusted; set AWS_CA_BUNDLE "
                              "to the CA certificate that signed it")
        if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
            return StoreError(f"{where}: {self.endpoint} does not speak TLS; check the scheme of AWS_ENDPOINT_URL")
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        reason = found.group(1).strip() if found else type(exc).__name__
        return StoreError(f"{where}: object store unreachable at {self.endpoint} ({reason})")

    def _call(self, key: str, fn, *args, **kwargs):
        # lazy: only the S3 backend needs it
        from minio.error import MinioException, S3Error

        # lazy: only the S3 backend needs it
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except (S3Error, MinioException, HTTPError, OSError) as exc:
            raise self._error(exc, key) from exc

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)

    def _get(self, key: str, **byte_range) -> bytes:
        def get():
            response = self.client.get_object(self.bucket, self._key(key), ssec=self.encryption.read_ssec(),
                                              **byte_range)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call(key, get)

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: the object appears whole or not at all.
        self._call(key, self.client.put_object, self.bucket, self._key(key), io.BytesIO(data), len(data),
                   sse=self.encryption.write_sse())

    def create_bytes(self, key: str, data: bytes) -> bool:
        # lazy: only the S3 backend needs it
        from minio.error import S3Error

        # S3's conditional write (If-None-Match: *; AWS since 2024, MinIO, SeaweedFS 4.x): 412 when
        # the key exists. minio-py 7.2's put_object passes no such header, its _put_object does.
        try:
            sse = self.encryption.write_sse()
            headers = {"If-None-Match": "*", **(sse.headers() if sse is not None else {})}
            self._call(key, self.client._put_object, self.bucket, self._key(key), data, headers)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def exists(self, key: str) -> bool:
        # lazy: only the S3 backend needs it
        from minio.error import S3Error

        if not key or key.endswith("/"):
            return False  # a prefix, never an object (some servers answer HEAD on folder markers)
        try:
            stat = self.client.stat_object(self.bucket, self._key(key), ssec=self.encryption.read_ssec())
            return not (stat.is_dir or stat.content_type == "application/x-directory")
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise self._error(exc, key) from exc
        except Exception as exc:
            raise self._error(exc, key) from exc

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0

        def run():
            listing = self.client.list_objects(self.bucket, prefix=full or None, recursive=True)
            return sorted(obj.object_name[strip:] for obj in listing if not obj.is_dir)

        return self._call(prefix, run)

    def size(self, key: str) -> int:
        return self._call(key, self.client.stat_object, self.bucket, self._key(key),
                          ssec=self.encryption.read_ssec()).size

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._get(key, offset=offset, length=length)

    def upload(self, local_path: str, key: str) -> None:
        self._call(key, self.client.fput_object, self.bucket, self._key(key), local_path,
                   sse=self.encryption.write_sse())

    def download(self, key: str, local_path: str) -> None:
        self._call(key, self.client.fget_object, self.bucket, self._key(key), local_path,
                   ssec=self.encryption.read_ssec())

    def delete(self, key: str) -> None:
        # lazy: only the S3 backend needs it
        from minio.deleteobjects import DeleteObject

        keys = self.list(key.rstrip("/") + "/") if not self.exists(key) else [key]

        def run():
            errors = list(self.client.remove_objects(
                self.bucket, (DeleteObject(self._key(k)) for k in keys)))
            if errors:
                raise StoreError(f"{self.url(key)}: could not delete {len(errors)} objects")

        self._call(key, run)

    def check(self) -> None:
        if not self._call("", self.client.bucket_exists, self.bucket):
            raise StoreError(f"{self.uri}: bucket {self.bucket!r} does not exist at {self.endpoint}")

    def ensure_bucket(self) -> None:
        if not self._call("", self.client.bucket_exists, self.bucket):
            self._call("", self.client.make_bucket, self.bucket)


def open_store(uri: str | None = None) -> Store:
    """The store rooted at `uri` (default: `default_store_uri()`)."""
    uri = uri or default_store_uri()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: an S3 store URI needs a bucket, like s3://conveyor")
        return S3Store(parsed.netloc, parsed.path)
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
        return S3Store(parsed.netloc), parsed.path.lstrip("/")
    if parsed.scheme in ("file", ""):
        path = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
        return FileStore("/"), path.as_posix().lstrip("/")
    raise StoreError(f"{uri}: unsupported scheme {parsed.scheme!r} (expected a path, file:// or s3://)")


def _main(argv: list[str]) -> int:
    """`python -m components.common.storage check URI`: the store answers with this environment's
    credentials (the chart's `helm test` runs it with the S3 Secret); one line either way."""
    import argparse  # lazy: only the `check` entry point parses arguments

    parser = argparse.ArgumentParser(prog="python -m components.common.storage")
    parser.add_argument("action", choices=["check"], help="check: the store answers (bucket exists, credentials work)")
    parser.add_argument("uri", help="store URI, s3://bucket[/prefix] or a folder")
    args = parser.parse_args(argv)
    store = open_store(args.uri)
    store.check()
    print(f"store {store.uri} answers" + (f" at {store.endpoint}" if isinstance(store, S3Store) else ""))
    return 0


if __name__ == "__main__":
    import sys

    from components.common.entry import run_main

    sys.exit(run_main("store", lambda: _main(sys.argv[1:])))
