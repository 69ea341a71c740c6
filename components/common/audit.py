"""The append-only, hash-chained audit log in the store (issue 25's foundation).

Layout: `audit/log/<seq, 12 digits>.json`, one object per entry, written once with the store's
conditional create (S3 `If-None-Match: *`, a hard link on a file store), so an entry is never
overwritten and two writers racing for one sequence number never both win: the loser reads the
winner's entry and takes the next number. Each entry carries the SHA-256 of its predecessor
(`prev`) and of itself (`hash`, over the canonical JSON of every other field), so an edited,
removed or reordered entry breaks the chain where it happened. `audit/head.json` names the newest
entry a writer saw; the chain must reach it, which catches entries cut from the end. (Someone who
can rewrite every entry and the head can forge a consistent log: anchor `head` elsewhere, e.g.
in a release record or a WORM bucket, for that threat.)
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import random
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components.common.errors import IntegrityError, NotFoundError
from components.common.storage import Store

PREFIX = "audit/log/"
HEAD_KEY = "audit/head.json"
GENESIS = "0" * 64
SEQ_DIGITS = 12


def entry_key(seq: int) -> str:
    return f"{PREFIX}{seq:0{SEQ_DIGITS}d}.json"


def _canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def default_actor() -> dict[str, str]:
    """Who is acting: the pipeline step's KFP run and ServiceAccount in a pod, else the OS user."""
    run_id = os.environ.get("CONVEYOR_RUN_ID") or os.environ.get("KFP_RUN_ID")
    account = os.environ.get("CONVEYOR_SERVICE_ACCOUNT")
    if account:
        return {"kind": "serviceaccount", "name": account, **({"run_id": run_id} if run_id else {})}
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = f"uid:{os.getuid()}"
    return {"kind": "user", "name": user, "host": socket.gethostname(), **({"run_id": run_id} if run_id else {})}


@dataclass(frozen=True)
class Appended:
    seq: int
    hash: str
    key: str


def _seq_of(key: str) -> int:
    return int(key[len(PREFIX):].removesuffix(".json"))


def _entry_keys(store: Store) -> list[str]:
    """The entries' keys in sequence order (listed names sort as text; sequence numbers as ints)."""
    return sorted((k for k in store.list(PREFIX) if k.endswith(".json")), key=_seq_of)


def _newest(store: Store) -> tuple[int, str]:
    """(seq, hash) of the newest entry, (0, GENESIS) for an empty log."""
    keys = _entry_keys(store)
    if not keys:
        return 0, GENESIS
    return _seq_of(keys[-1]), json.loads(store.read_bytes(keys[-1]))["hash"]


def append(store: Store, event: str, subject: dict[str, Any] | None = None,
           details: dict[str, Any] | None = None, actor: dict[str, Any] | None = None,
           max_attempts: int = 200) -> Appended:
    """Record one state change. `subject` names what changed (model, version, dataset, env, ...);
    `details` holds what a reader needs to judge it (reasons, checks, metrics). No secrets and no
    raw personal data go in: callers pass identifiers and figures."""
    seq, prev = _newest(store)
    for _ in range(max_attempts):
        entry = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                 "event": event, "subject": subject or {}, "actor": actor or default_actor(),
                 "details": details or {}, "prev": prev}
        entry["hash"] = entry_hash(entry)
        key = entry_key(seq + 1)
        if store.create_bytes(key, json.dumps(entry, sort_keys=True).encode()):
            _advance_head(store, seq + 1, entry["hash"])
            return Appended(seq + 1, entry["hash"], key)
        # Another writer took this number: chain onto its entry and try the next one.
        seq, prev = seq + 1, json.loads(store.read_bytes(key))["hash"]
        # jitter between racing writers, not a secret (bandit B311)
        time.sleep(random.uniform(0, 0.01))  # nosec B311
    raise IntegrityError(f"audit log at {store.url(PREFIX)}: could not append {event!r} after {max_attempts} "
                         "attempts (too many concurrent writers)")


def _advance_head(store: Store, seq: int, digest: str) -> None:
    # Best effort and only forwards: a slower writer may leave an older head, which verify accepts
    # (the chain still reaches it); a head past the chain's end is what it refuses.
    try:
        current = json.loads(store.read_bytes(HEAD_KEY))["seq"]
    except NotFoundError:
        current = 0
    if seq > current:
        store.write_bytes(HEAD_KEY, json.dumps({"seq": seq, "hash": digest}).encode())


def read_entries(store: Store) -> list[dict[str, Any]]:
    """Every entry in sequence order, as stored (verify checks them)."""
    return [json.loads(store.read_bytes(k)) for k in _entry_keys(store)]


def verify(store: Store) -> int:
    """Check the whole chain; the number of entries when intact, else IntegrityError naming the
    first entry that is edited, missing or out of order."""
    keys = _entry_keys(store)
    hashes = [GENESIS]  # hashes[n]: entry n's, as verified
    for expected, key in enumerate(keys, start=1):
        where = store.url(key)
        if _seq_of(key) != expected:
            raise IntegrityError(f"audit entry {expected} is missing: the log goes from {expected - 1} to "
                                 f"{_seq_of(key)} ({where})")
        try:
            entry = json.loads(store.read_bytes(key))
        except ValueError as exc:
            raise IntegrityError(f"audit entry {expected} ({where}) is not JSON: {exc}") from None
        if entry.get("seq") != expected:
            raise IntegrityError(f"audit entry {expected} ({where}) holds entry {entry.get('seq')}: entries were "
                                 "moved or reordered")
        if entry.get("hash") != entry_hash(entry):
            raise IntegrityError(f"audit entry {expected} ({where}) was edited: its content does not match its hash")
        if entry.get("prev") != hashes[-1]:
            raise IntegrityError(f"audit entry {expected} ({where}) does not follow entry {expected - 1}: its "
                                 "predecessor's hash differs (an entry before it was replaced or reordered)")
        hashes.append(entry["hash"])
    try:
        head = json.loads(store.read_bytes(HEAD_KEY))
    except NotFoundError:
        head = {"seq": 0}
    if head["seq"] > len(keys):
        raise IntegrityError(f"audit log ends at entry {len(keys)} but entry {head['seq']} was written "
                             f"({store.url(HEAD_KEY)}): entries were removed from its end")
    if head["seq"] and head.get("hash") != hashes[head["seq"]]:
        raise IntegrityError(f"audit entry {head['seq']} differs from the one recorded as written "
                             f"({store.url(HEAD_KEY)})")
    return len(keys)


def select(entries: list[dict[str, Any]], model: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
    """Entries about `model` (subject.model) at or after `since` (an ISO time or date)."""
    chosen = entries
    if model is not None:
        chosen = [e for e in chosen if e.get("subject", {}).get("model") == model]
    if since is not None:
        chosen = [e for e in chosen if e["time"] >= since]
    return chosen


__all__ = ["Appended", "append", "default_actor", "entry_hash", "entry_key", "read_entries", "select", "verify"]
