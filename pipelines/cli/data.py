"""`conveyor data`: ingest, list and inspect dataset versions."""

from __future__ import annotations

import sys

from components.common.errors import InputError, NotFoundError
from components.common.logs import StepLog
from components.common.storage import open_store
from components.common.version import code_version
from components.dataset.quarantine import quarantined_rows
from components.dataset.versioning import list_versions, resolve
from components.stages.ingest.engines import run_ingest
from components.stages.report.executor import report_for_versions
from pipelines.cli.common import config_from_args, output_file, print_json, print_record, print_table


def cmd_data_ingest(args) -> int:
    cfg = config_from_args(args)
    settings = cfg.data.source
    overrides = {k: v for k, v in (("format", args.format), ("text_col", args.text_col),
                                   ("label_col", args.label_col), ("source_col", args.source_col),
                                   ("encoding", args.encoding)) if v is not None}
    if args.include:
        overrides["include"] = args.include
    settings = settings.model_copy(update=overrides)
    dump = cfg.model_dump(mode="json")
    result = run_ingest(args.engine or cfg.data.engine, args.source, args.dataset, args.store, settings, cfg.cleaning,
                        parent=None if args.parent == "none" else args.parent, code_version=code_version(),
                        engine_config={"spark": dump["data"]["spark"]}, on_cluster=False, workers=cfg.data.workers,
                        log=StepLog("ingest", stream=sys.stderr))  # stdout is the one JSON result
    print_json(result.to_json())
    return 0


def cmd_data_versions(args) -> int:
    store = open_store(args.store)
    versions = list_versions(store, args.name)
    if not versions:  # a dataset is its versions: none is an unknown dataset, in either mode
        raise NotFoundError(f"dataset {args.name!r} has no versions in {store.uri}")
    if args.json:
        print_json([{"version": m["version"], "parent": m["parent"], "created_at": m["created_at"],
                      **{f"rows_{k}": m["rows"][k] for k in ("total", "accepted", "quarantined")}}
                     for m in versions])
        return 0
    rows = [(m["version"], m["parent"] or "-", m["created_at"], m["rows"]["total"], m["rows"]["accepted"],
             m["rows"]["quarantined"]) for m in versions]
    print_table(("VERSION", "PARENT", "CREATED", "ROWS", "ADDED", "QUARANTINED"), rows)
    return 0


def cmd_data_show(args) -> int:
    ref = resolve(open_store(args.store), args.name, args.version)
    print_record(ref.manifest, args.json)
    return 0


def cmd_data_quarantine(args) -> int:
    store = open_store(args.store)
    ref = resolve(store, args.name, args.version)
    counts = ref.manifest["rows"].get("by_reason", {})
    if args.reason is not None and args.reason not in counts:
        known = ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none: nothing was quarantined"
        raise InputError(f"--reason {args.reason}: version {ref.version} of {args.name!r} quarantined no row for "
                         f"this reason; its reasons: {known}")
    rows = quarantined_rows(store, ref, args.reason, with_raw=args.raw)
    if args.json:
        print_json(rows)
        return 0
    shown = rows if args.limit == 0 else rows[:args.limit]

    def where(uri: str, row: int) -> str:
        return f"{uri}:{row}" if row else uri

    table = []
    for r in shown:
        detail = r["detail"] or ""
        if "duplicate_of" in r:
            kept = r["duplicate_of"]
            detail = (f"same text as {where(kept['source_uri'], kept['source_row'])}" if "source_uri" in kept
                      else f"same text as {kept['doc_id']}")
        line = (where(r["source_uri"], r["source_row"]), r["reason"], " ".join(detail.split())[:160])
        table.append(line + ((" ".join((r["raw"] or "").split())[:80],) if args.raw else ()))
    print_table(("SOURCE", "REASON", "DETAIL") + (("RAW",) if args.raw else ()), table)
    sys.stderr.write(f"{len(shown)} of {len(rows)} quarantined rows of {args.name}@{ref.version}"
                     + (f" (reason {args.reason})" if args.reason else "")
                     + ("; --limit 0 shows all" if len(shown) < len(rows) else "") + "\n")
    return 0


def cmd_data_report(args) -> int:
    cfg = config_from_args(args)
    verdict = report_for_versions(open_store(args.store), args.name, args.version, args.reference,
                                  cfg.report, html_path=output_file(args.html, "--html"))
    print_json(verdict)
    return 0
