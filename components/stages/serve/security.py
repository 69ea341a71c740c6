"""What the predictor needs to serve securely, and what its clients need to reach it.

Pure: no kserve or fastapi import, so the release steps (which call predictors) can use the client
half without loading a model server.

Server side (`conveyor serve`): TLS from a certificate and key (mutual TLS with a client CA), and a
bearer token for the data plane, read from a file so that neither `ps` nor the pod spec shows it.
Client side (canary, staging, replay, infra validation): the same token and the CA that signed the
server's certificate, as one `ClientAuth`.
"""

from __future__ import annotations

import hmac
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from components.common.errors import InputError

MIN_TOKEN_CHARS = 16
# A mounted Kubernetes Secret: the client-side token (the canary's replay) and its CA come from here
# the variable's name, not a token (bandit B105)
TOKEN_FILE_ENV = "CONVEYOR_INFERENCE_TOKEN_FILE"  # nosec B105
CA_FILE_ENV = "CONVEYOR_INFERENCE_CA_FILE"


def read_token_file(path: str, what: str = "--auth-token-file") -> str:
    """The token in `path` (one line; a trailing newline, as `kubectl create secret --from-file`
    keeps it, is dropped). Errors name the file and the rule, never the content."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path}: cannot read it ({type(exc).__name__})") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise InputError(f"{what} {path}: the token must have at least {MIN_TOKEN_CHARS} characters "
                         f"(it has {len(token)})")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise InputError(f"{what} {path}: the token must be one line of printable characters without spaces")
    return token


def bearer_matches(header_value: str | None, token: str) -> bool:
    """One constant-time comparison of an Authorization header with `Bearer <token>`."""
    given = (header_value or "").encode("latin-1", errors="replace")
    return hmac.compare_digest(given, f"Bearer {token}".encode("latin-1", errors="replace"))


@dataclass(frozen=True)
class ServerSecurity:
    """`conveyor serve`'s TLS and token settings (all optional; none: plain HTTP, open)."""

    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None   # mutual TLS: clients must present a certificate it signed
    # Kept out of repr: a traceback's locals or a debug print never shows a token.
    auth_token: str | None = field(default=None, repr=False)     # data plane: predict, infer, explain, metadata
    metrics_token: str | None = field(default=None, repr=False)  # /metrics (open when None, for Prometheus)

    def __post_init__(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InputError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise InputError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                           ("--tls-client-ca", self.tls_client_ca)):
            if path and not os.path.isfile(path):
                raise InputError(f"{flag} {path}: no such file")
        if self.tls_cert:
            self._check_pair()

    def _check_pair(self) -> None:
        """The pair loads (a key that does not match the certificate fails here, not at the first
        handshake); the error names the files, never the key's bytes."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                context.load_verify_locations(self.tls_client_ca)
        except ssl.SSLError as exc:
            raise InputError(f"--tls-cert {self.tls_cert} / --tls-key {self.tls_key}"
                             + (f" / --tls-client-ca {self.tls_client_ca}" if self.tls_client_ca else "")
                             + f": not a matching PEM certificate and key ({exc.reason or 'unreadable'})") from None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True)
class ClientAuth:
    """What a client of a secured predictor sends: the bearer token and the CA to trust (and a
    client certificate for mutual TLS)."""

    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.ca_file or self.client_cert):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    @classmethod
    def from_env(cls) -> ClientAuth:
        """The token and CA mounted from Secrets on the cluster ($CONVEYOR_INFERENCE_TOKEN_FILE,
        $CONVEYOR_INFERENCE_CA_FILE); empty when neither is set."""
        token_file, ca_file = os.environ.get(TOKEN_FILE_ENV), os.environ.get(CA_FILE_ENV)
        return cls(token=read_token_file(token_file, f"${TOKEN_FILE_ENV}") if token_file else None,
                   ca_file=ca_file or None)
