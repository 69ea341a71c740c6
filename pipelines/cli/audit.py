"""`conveyor audit`: list the audit log's entries, or verify its chain."""

from __future__ import annotations

import re

from components.common import audit
from components.common.errors import InputError
from components.common.storage import open_store
from pipelines.cli.common import print_json, print_table


def cmd_audit_list(args) -> int:
    if args.since is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?", args.since):
        raise InputError(f"--since {args.since}: expected an ISO date or UTC time, e.g. 2026-12-01 or "
                         "2026-12-01T09:30:00Z")
    entries = audit.select(audit.read_entries(open_store(args.store)), model=args.model, since=args.since)
    if args.json:
        print_json(entries)
        return 0

    first = ("model", "dataset", "version", "env", "alias")

    def what(e: dict) -> str:
        subject = e["subject"]
        keys = [k for k in first if k in subject] + sorted(k for k in subject if k not in first)
        return " ".join(f"{k}={subject[k]}" for k in keys)

    def outcome(e: dict) -> str:  # the one detail a reader scans for
        d = e["details"]
        shown = d.get("decision") or d.get("outcome") or (f"from {d['from']}" if d.get("from") else None)
        return str(shown) if shown else "-"

    print_table(("SEQ", "TIME", "EVENT", "SUBJECT", "OUTCOME", "ACTOR"),
                 [(e["seq"], e["time"], e["event"], what(e) or "-", outcome(e), e["actor"].get("name", "-"))
                  for e in entries])
    return 0


def cmd_audit_verify(args) -> int:
    store = open_store(args.store)
    count = audit.verify(store)  # IntegrityError (exit 6) names the first broken entry
    print(f"audit log intact: {count} entries, each chained to the one before ({store.url(audit.PREFIX)})")
    return 0
