"""The `s3://` backend of the one storage abstraction (components.common.storage): an S3 bucket,
optionally a prefix inside it, through the MinIO client. `open_store` loads this module only for an
s3:// URI, so a folder store never imports minio or urllib3. Settings and encryption at rest are
described in components.common.storage.
"""

from __future__ import annotations

import configparser
import io
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.credentials import AWSConfigProvider, ChainedProvider, IamAwsProvider
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.sse import SseCustomerKey, SseKMS, SseS3
from urllib3.exceptions import HTTPError

from components.common.errors import NotFoundError, StoreError
from components.common.storage import ENCRYPTION_ENV, Store, StoreEncryption


def write_sse(encryption: StoreEncryption):
    """minio's Sse object for a PUT (None: no header)."""
    if encryption.mode == "sse-s3":
        return SseS3()
    if encryption.mode == "sse-kms":
        return SseKMS(encryption.kms_key_id, {})
    if encryption.mode == "sse-c":
        return SseCustomerKey(encryption.customer_key)
    return None


def read_ssec(encryption: StoreEncryption):
    """SSE-C objects are read with the same key; the other modes need nothing on a read."""
    return write_sse(encryption) if encryption.mode == "sse-c" else None


def _tls_settings() -> dict[str, str]:
    """Verify an https endpoint against $AWS_CA_BUNDLE (as the AWS CLI and SDKs do), else the system
    bundle minio uses ($SSL_CERT_FILE, else certifi's)."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        if not os.path.isfile(bundle):
            raise StoreError(f"AWS_CA_BUNDLE={bundle}: no such file (the CA certificate that signed the S3 "
                             "endpoint's certificate, PEM)")
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": os.environ.get("SSL_CERT_FILE") or certifi.where()}


def _aws_config_region() -> str | None:
    """The region of the AWS CLI config's profile ($AWS_PROFILE, else default), as the AWS tools read it."""
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
            credentials = ChainedProvider([AWSConfigProvider(profile=os.environ.get("AWS_PROFILE")),
                                           IamAwsProvider()])
        self.region = region
        self.client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=http, credentials=credentials)

    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _error(self, exc: Exception, key: str) -> StoreError:
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
        try:
            return fn(*args, **kwargs)
        except (S3Error, MinioException, HTTPError, OSError) as exc:
            raise self._error(exc, key) from exc

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)

    def _get(self, key: str, **byte_range) -> bytes:
        def get():
            response = self.client.get_object(self.bucket, self._key(key), ssec=read_ssec(self.encryption),
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
                   sse=write_sse(self.encryption))

    def create_bytes(self, key: str, data: bytes) -> bool:
        # S3's conditional write (If-None-Match: *; AWS since 2024, MinIO, SeaweedFS 4.x): 412 when
        # the key exists. minio-py 7.2's put_object passes no such header, its _put_object does.
        try:
            sse = write_sse(self.encryption)
            headers = {"If-None-Match": "*", **(sse.headers() if sse is not None else {})}
            self._call(key, self.client._put_object, self.bucket, self._key(key), data, headers)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def exists(self, key: str) -> bool:
        if not key or key.endswith("/"):
            return False  # a prefix, never an object (some servers answer HEAD on folder markers)
        try:
            stat = self.client.stat_object(self.bucket, self._key(key), ssec=read_ssec(self.encryption))
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
                          ssec=read_ssec(self.encryption)).size

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._get(key, offset=offset, length=length)

    def upload(self, local_path: str, key: str) -> None:
        self._call(key, self.client.fput_object, self.bucket, self._key(key), local_path,
                   sse=write_sse(self.encryption))

    def download(self, key: str, local_path: str) -> None:
        self._call(key, self.client.fget_object, self.bucket, self._key(key), local_path,
                   ssec=read_ssec(self.encryption))

    def delete(self, key: str) -> None:
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
