"""The `conveyor` command line.

Every command prints results on stdout (JSON where a program will read it) and any failure as one
line on stderr, `conveyor: error: ...`, with an exit code per error class (see
components.common.errors). Set CONVEYOR_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable

from components.common.entry import run_main
from components.common.errors import InputError, NotFoundError
from components.config import ConveyorConfig, load_config
from components.ingest.config import FORMATS

# the variable's name, not a token (bandit B105)
REPOSITORY_TOKEN_ENV = "CONVEYOR_MODEL_REPOSITORY_TOKEN"  # nosec B105


def _load(args) -> ConveyorConfig:
    if getattr(args, "config", None) or os.environ.get("CONVEYOR_CONFIG"):
        return load_config(args.config)
    return ConveyorConfig()  # generic defaults for ad-hoc sources


def _print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=None, sort_keys=False, default=str) + "\n")


def _print_record(value, as_json: bool) -> None:
    """A record (a manifest, a run, a model card): YAML to read, JSON (`--json`) to parse."""
    if as_json:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
        return
    import yaml  # lazy: only the record commands print YAML

    sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(value, default=str)), sort_keys=False,
                                    allow_unicode=True, width=110))


def _output_file(path: str | None, option: str) -> str | None:
    """A file the user asked to be written: its folder must exist and be writable (exit 2 naming
    the path, not an internal error halfway through the work)."""
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{option} {path}: is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")
    return path


def _output_folder(path: str, option: str) -> str:
    """A folder the user asked to be written (created when missing): exit 2 naming the path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create the folder ({exc.strerror})") from exc
    if not os.access(path, os.W_OK):
        raise InputError(f"{option} {path}: the folder is not writable")
    return path


# -- data -----------------------------------------------------------------------------------------

def cmd_data_ingest(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.logs import StepLog
    from components.common.version import code_version
    from components.ingest.engines import run_ingest

    cfg = _load(args)
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
    _print_json(result.to_json())
    return 0


def cmd_data_versions(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.dataset.versioning import list_versions

    store = open_store(args.store)
    versions = list_versions(store, args.name)
    if not versions:  # a dataset is its versions: none is an unknown dataset, in either mode
        raise NotFoundError(f"dataset {args.name!r} has no versions in {store.uri}")
    if args.json:
        _print_json([{"version": m["version"], "parent": m["parent"], "created_at": m["created_at"],
                      **{f"rows_{k}": m["rows"][k] for k in ("total", "accepted", "quarantined")}}
                     for m in versions])
        return 0
    rows = [(m["version"], m["parent"] or "-", m["created_at"], m["rows"]["total"], m["rows"]["accepted"],
             m["rows"]["quarantined"]) for m in versions]
    _print_table(("VERSION", "PARENT", "CREATED", "ROWS", "ADDED", "QUARANTINED"), rows)
    return 0


def cmd_data_show(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.dataset.versioning import resolve

    ref = resolve(open_store(args.store), args.name, args.version)
    _print_record(ref.manifest, args.json)
    return 0


def cmd_data_quarantine(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.dataset.quarantine import quarantined_rows
    from components.dataset.versioning import resolve

    store = open_store(args.store)
    ref = resolve(store, args.name, args.version)
    counts = ref.manifest["rows"].get("by_reason", {})
    if args.reason is not None and args.reason not in counts:
        known = ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none: nothing was quarantined"
        raise InputError(f"--reason {args.reason}: version {ref.version} of {args.name!r} quarantined no row for "
                         f"this reason; its reasons: {known}")
    rows = quarantined_rows(store, ref, args.reason, with_raw=args.raw)
    if args.json:
        _print_json(rows)
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
    _print_table(("SOURCE", "REASON", "DETAIL") + (("RAW",) if args.raw else ()), table)
    sys.stderr.write(f"{len(shown)} of {len(rows)} quarantined rows of {args.name}@{ref.version}"
                     + (f" (reason {args.reason})" if args.reason else "")
                     + ("; --limit 0 shows all" if len(shown) < len(rows) else "") + "\n")
    return 0


def cmd_data_report(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.report.executor import report_for_versions

    cfg = _load(args)
    verdict = report_for_versions(open_store(args.store), args.name, args.version, args.reference,
                                  cfg.report, html_path=_output_file(args.html, "--html"))
    _print_json(verdict)
    return 0


# -- runs and models --------------------------------------------------------------------------------

def cmd_audit_list(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common import audit
    from components.common.storage import open_store

    if args.since is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?", args.since):
        raise InputError(f"--since {args.since}: expected an ISO date or UTC time, e.g. 2026-12-01 or "
                         "2026-12-01T09:30:00Z")
    entries = audit.select(audit.read_entries(open_store(args.store)), model=args.model, since=args.since)
    if args.json:
        _print_json(entries)
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

    _print_table(("SEQ", "TIME", "EVENT", "SUBJECT", "OUTCOME", "ACTOR"),
                 [(e["seq"], e["time"], e["event"], what(e) or "-", outcome(e), e["actor"].get("name", "-"))
                  for e in entries])
    return 0


def cmd_audit_verify(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common import audit
    from components.common.storage import open_store

    store = open_store(args.store)
    count = audit.verify(store)  # IntegrityError (exit 6) names the first broken entry
    print(f"audit log intact: {count} entries, each chained to the one before ({store.url(audit.PREFIX)})")
    return 0


def _approval_config(args) -> ConveyorConfig:
    """The environments and release settings: --config, $CONVEYOR_CONFIG, else the bundled config
    (the one `conveyor run` stages with)."""
    return load_config(getattr(args, "config", None))


def cmd_decide(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.release.environments import decide

    cfg = _approval_config(args)
    store = open_store(args.store)
    record = decide(store, args.model, args.version, args.env, cfg.environments, args.verb, args.reason)
    by = record["by"].get("name", "?")
    print(f"{args.model} {args.version}: entry to {args.env} {record['decision']} by {by} at {record['at']} "
          f"(checked: {record['checked']['env']} passed at {record['checked']['at']})")
    if args.verb == "reject" or args.no_release:
        if args.verb == "approve":
            print(f"not released (--no-release): run `conveyor release {args.model} {args.version} --env {args.env}`")
        return 0
    return _release(cfg, store, args.model, args.version, args.env, args.workdir)


def _release(cfg: ConveyorConfig, store, model: str, version: str, env: str, workdir: str) -> int:
    # lazy: kfp.local is needed only to release
    from pipelines.local_run import release_locally

    print(f"releasing {model} {version} to {env} ({cfg.rollout.strategy}) through the conveyor-release pipeline "
          "(kfp.local)...", flush=True)
    record = release_locally(cfg, store.uri, version, env, _output_folder(workdir, "--workdir"))
    print(f"{cfg.rollout.strategy} release of {model} {version} to {env}: {record['outcome']} vs stable "
          f"{record.get('stable') or 'none'}; record: {record.get('record_uri')}")
    return 0


def cmd_release(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.release.environments import require_entry

    cfg = _approval_config(args)
    store = open_store(args.store)
    require_entry(store, args.model, args.version, args.env, cfg.environments)  # refused before anything starts
    return _release(cfg, store, args.model, args.version, args.env, args.workdir)


def cmd_release_job(args) -> int:
    """The chart's release Job (started by `kubectl conveyor approve|reject`): the decision, and for an
    approval the production release on KServe, with the identity the API server gave the plugin."""
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.release.cluster_approval import DECISION_ENV
    from components.release.environments import decide

    missing = [name for name in DECISION_ENV if not os.environ.get(name)]
    if missing:
        raise InputError(f"release-job: {', '.join(missing)} unset (the Job `kubectl conveyor approve|reject` "
                         "creates from the chart's template sets them)")
    verb, model, version, env, reason, who = (os.environ[name] for name in DECISION_ENV)
    try:
        user = json.loads(who)
        username = user["username"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("release-job: CONVEYOR_APPROVER is not the SelfSubjectReview user JSON") from exc
    actor = {"kind": "user", "name": username, "groups": user.get("groups", []),
             "authenticated_by": "SelfSubjectReview", "via": f"kubectl conveyor {verb}",
             "job": os.environ.get("HOSTNAME", ""), "service_account": os.environ.get("CONVEYOR_SERVICE_ACCOUNT", "")}
    cfg = _approval_config(args)
    store = open_store(args.store)
    record = decide(store, model, version, env, cfg.environments, verb, reason, actor=actor)
    print(f"{model} {version}: entry to {env} {record['decision']} by {username}")
    if len(cfg.environments) > 1:  # the request is decided: `kubectl conveyor pending` no longer lists it
        # lazy: the cluster SDK, only in the release Job
        from components.common.errors import ClusterError
        from components.release.cluster_staging import mark_awaiting

        try:
            mark_awaiting(cfg.deploy, cfg.environments[-2], None)
        except ClusterError as exc:  # the decision is recorded; the mark is a convenience for `pending`
            sys.stderr.write(f"conveyor: warning: the pending mark on the staging InferenceService stays: {exc}\n")
    if verb == "reject":
        return 0
    # lazy: the release and the cluster SDK, only for an approval
    from components.release.cluster import run_cluster_rollout
    from components.release.executor import release

    deploy = cfg.deploy.model_copy(update={"store": store.uri}) if store.uri.startswith("s3://") else cfg.deploy
    canary = cfg.canary

    def deliver(texts, labels, on_step):
        return run_cluster_rollout(store, deploy, canary, model, version, rollout=cfg.rollout, on_step=on_step,
                                   replay_rows=(texts, labels) if canary.cluster_replay_requests else None)

    outcome = release(store, model, version, env, cfg.environments, cfg.rollout.strategy, deliver, target="kserve")
    print(f"{cfg.rollout.strategy} release of {model} {version} to {env}: {outcome['outcome']}")
    return 0 if outcome["outcome"] == "Promoted" else 1


def cmd_pending(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.release.environments import pending

    rows = pending(open_store(args.store), args.model)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no version awaits approval" + (f" for {args.model}" if args.model else ""))
        return 0
    _print_table(("MODEL", "VERSION", "ENV", "REQUESTED", "EXPIRES", "CHECKED"),
                 [(r["model"], r["version"], r["env"], r["requested_at"], r["expires_at"],
                   f"{r['checked'].get('env')} {r['checked'].get('outcome')}") for r in rows])
    return 0


def cmd_report_delivery(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common import audit
    from components.common.storage import open_store
    from components.release.delivery import delivery_figures, parse_window

    try:
        window = parse_window(args.window)
    except ValueError as exc:
        raise InputError(f"--window: {exc}") from exc
    figures = delivery_figures(audit.read_entries(open_store(args.store)), model=args.model, window=window)
    if args.push:
        from components.release.gauges import push_delivery  # lazy: prometheus_client's push

        try:
            push_delivery(args.push, figures)
        except OSError as exc:
            raise InputError(f"--push {args.push}: the Pushgateway did not take the figures ({exc})") from exc
    if args.json:
        _print_json(figures)
        return 0

    def hours(value) -> str:
        return "n/a" if value is None else (f"{value * 60:.1f} min" if value < 1 else f"{value:.1f} h")

    lead, restore = figures["lead_time_hours"], figures["time_to_restore_hours"]
    rate = figures["change_failure_rate"]
    print(f"delivery of {figures['model'] or 'every model'} over {figures['window_days']:g} days "
          f"({figures['from']} to {figures['to']}), from the audit log:")
    print(f"  deployment frequency   {figures['deployment_frequency_per_day']:.3g} per day "
          f"({figures['production_promotions']} production promotions)")
    print(f"  lead time for changes  median {hours(lead['median'])}, p90 {hours(lead['p90'])} "
          f"({lead['count']} promotions traced to their data version)")
    print(f"  change failure rate    {'n/a' if rate is None else f'{rate:.0%}'} "
          f"({len(figures['failed_releases'])} of {figures['production_releases']} production releases)")
    print(f"  time to restore        median {hours(restore['median'])} ({restore['count']} restorations; "
          f"{restore['alerts']} drift/accuracy alerts)")
    return 0


def cmd_runs_list(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.tracking.runs import list_runs, summary_row

    rows = [summary_row(r) for r in list_runs(open_store(args.store))]
    if args.json:
        _print_json(rows)
        return 0
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else v)  # noqa: E731
    _print_table(("RUN", "STATUS", "FAMILY", "DATASET", "VAL_ACC", "TEST_ACC", "EPOCHS", "SECONDS"),
                 [tuple(fmt(r[k]) for k in ("run_id", "status", "family", "dataset", "val_accuracy", "test_accuracy",
                                            "epochs", "seconds")) for r in rows])
    return 0


def cmd_runs_show(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.tracking.runs import read_run

    _print_record(read_run(open_store(args.store), args.run_id), args.json)
    return 0


def cmd_runs_compare(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.tracking.runs import compare, read_run

    store = open_store(args.store)
    result = compare([read_run(store, r) for r in args.run_ids])
    if args.json:
        _print_json(result)
        return 0
    runs = result["runs"]
    rows = [(name, *[str(v) for v in values]) for name, values in result["differing_params"].items()]
    for split in ("validation", "test"):
        for metric in ("accuracy", "macro_f1", "loss"):
            rows.append((f"{split}.{metric}", *[f"{result['metrics'][r][split].get(metric, float('nan')):.4f}"
                                                for r in runs]))
    _print_table(("", *runs), rows)
    return 0


def cmd_models_list(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.registry.store import aliases, list_versions

    store = open_store(args.store)
    versions = list_versions(store, args.name)
    if not versions:
        raise NotFoundError(f"model {args.name!r} has no versions in the registry at {store.uri}")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(store, args.name).items():
        by_version.setdefault(version, []).append(alias)
    if args.json:
        _print_json([{"version": c["version"], "aliases": sorted(by_version.get(c["version"], [])),
                      "created_at": c["created_at"], "run_id": c["run_id"],
                      "test_accuracy": c["metrics"]["test"].get("accuracy"),
                      "dataset": f"{c['dataset']['name']}@{c['dataset']['version']}"} for c in versions])
        return 0
    rows = [(c["version"], ",".join(sorted(by_version.get(c["version"], []))) or "-", c["created_at"], c["run_id"],
             f"{c['metrics']['test'].get('accuracy', float('nan')):.4f}",
             f"{c['dataset']['name']}@{c['dataset']['version']}") for c in versions]
    _print_table(("VERSION", "ALIASES", "CREATED", "RUN", "TEST_ACC", "DATASET"), rows)
    return 0


def cmd_models_show(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.registry.store import load, read_cross_validation, read_explanations

    store = open_store(args.store)
    loaded = load(store, args.name, args.ref)  # verifies every file's sha256
    card = dict(loaded.card)
    if (explanations := read_explanations(store, args.name, card["version"])) is not None:
        card["explanations"] = explanations  # global token importance, from the evaluate step
    if (estimate := read_cross_validation(store, args.name, card["version"])) is not None:
        card["cross_validation"] = estimate  # k-fold estimate, from the evaluate step (evaluate.cv_folds)
    _print_record(card, args.json)
    return 0


def cmd_models_report(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.registry.store import resolve_version
    from components.release import compliance

    cfg = _approval_config(args)
    store = open_store(args.store)
    version = resolve_version(store, args.name, args.ref)
    report = compliance.gather(store, args.name, version, [e.name for e in cfg.environments])
    folder = _output_folder(args.out, "--out")
    written = {}
    for suffix, render in (("md", compliance.markdown), ("html", compliance.html)):
        path = os.path.join(folder, f"{args.name}-{version}-compliance.{suffix}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(render(report))
        written[suffix] = path
    if args.json:
        _print_json({"model": args.name, "version": version, **written, "chain_intact": report["chain"]["intact"]})
    else:
        print(f"compliance report of {args.name} {version}: {written['md']} and {written['html']} (audit log "
              f"{'intact' if report['chain']['intact'] else 'BROKEN'}; {len(report['entries'])} entries about it)")
    return 0 if report["chain"]["intact"] else 6


def parse_model_ref(value: str, store: str | None) -> tuple[str | None, str, str]:
    """NAME, NAME@ALIAS_OR_VERSION, or a registry URI .../models/NAME/VERSION -> (store, name, ref)."""
    if "://" in value:
        head, sep, tail = value.partition("/models/")
        parts = tail.strip("/").split("/")
        if not sep or len(parts) != 2:
            raise InputError(f"{value}: expected a registry URI like s3://bucket/models/NAME/VERSION")
        return head, parts[0], parts[1]
    name, _, ref = value.partition("@")
    return store, name, ref or "champion"


def cmd_serve(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.serve.predictor import serve

    model_dir = None
    if os.path.isdir(args.model):  # a version folder, e.g. /mnt/models from KServe's storage initializer
        # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
        from components.registry.store import dir_card

        model_name = dir_card(args.model)["name"]
        store, name, ref, model_dir = args.store or os.environ.get("CONVEYOR_STORE"), model_name, "", args.model
    else:
        store, name, ref = parse_model_ref(args.model, args.store)
    if args.role not in ("stable", "canary"):  # a default from $CONVEYOR_ROLE is not checked by argparse
        raise InputError(f"--role / $CONVEYOR_ROLE {args.role!r}: expected stable or canary")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", args.env):
        raise InputError(f"--env / $CONVEYOR_ENV {args.env!r}: expected an environment name like staging or "
                         "production")
    chaos = {"error_rate": args.chaos_error_rate, "delay_ms": args.chaos_delay_ms,
             "flip_labels": args.chaos_flip_labels}
    token = None
    if args.model_repository:
        token = os.environ.get(REPOSITORY_TOKEN_ENV, "")
        if len(token) < 16:
            raise InputError(f"--model-repository needs a token of at least 16 characters in ${REPOSITORY_TOKEN_ENV} "
                             f"(got {len(token)}); it is read from the environment so that ps does not show it")
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.serve.security import ServerSecurity, read_token_file

    security = ServerSecurity(
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        auth_token=read_token_file(args.auth_token_file) if args.auth_token_file else None,
        metrics_token=read_token_file(args.metrics_token_file, "--metrics-token-file")
        if args.metrics_token_file else None)
    return serve(store, name, ref, args.port, role=args.role, env=args.env, name=args.name,
                 log_sample_rate=args.log_sample_rate, security=security, log_text=args.log_text,
                 max_batch=args.max_batch, max_chars=args.max_chars, chaos=chaos, access_log=args.access_log,
                 model_dir=model_dir, host=args.host, workers=args.workers, repository_token=token,
                 max_explain_batch=args.max_explain_batch, max_explain_tokens=args.max_explain_tokens)


def cmd_monitor(args) -> int:
    """One monitoring window now: verdict, trigger decision (recorded), optional Pushgateway push."""
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    import datetime as dt

    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.config import load_config
    from components.monitor import trigger
    from components.monitor.executor import expire_logs, monitor_window

    html = _output_file(args.html, "--html")  # before the decision is recorded
    cfg = load_config(args.config)
    model = args.model or cfg.model_name
    store = open_store(args.store)
    now = dt.datetime.now(dt.UTC)
    expired = expire_logs(store, model, cfg.monitor.retention_days, now)
    verdict, page = monitor_window(store, model, cfg.monitor, cfg.split, now=now)
    decision = trigger.decide(cfg.monitor.trigger, verdict, trigger.history(store, model), now)
    decision["record"] = trigger.record(store, model, decision)
    if cfg.monitor.pushgateway_url:
        # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
        from components.monitor.alerts import push

        push(cfg.monitor.pushgateway_url, verdict, decision)
    if html:
        with open(html, "w", encoding="utf-8") as handle:
            handle.write(page)
    _print_json({"status": verdict["status"], "signals": verdict.get("signals"), "window": verdict["window"],
                 "action": decision["action"], "reasons": decision["reasons"], "record": decision["record"],
                 "retention": expired})
    return 0


# -- pipelines ------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    out = _output_folder(args.out, "--out")
    for option, variable, value in (("--image-registry", "CONVEYOR_REGISTRY", args.image_registry),
                                    ("--image-tag", "CONVEYOR_IMAGE_TAG", args.image_tag)):
        if value is not None:
            if not value or any(c.isspace() for c in value):
                raise InputError(f"{option} {value!r}: expected a registry path like registry.example.com/ml "
                                 "(or a tag like 0.1.0), with no spaces")
            os.environ[variable] = value  # read once, when components.images loads (below)
    # lazy: the components (and their images) load only now, after the image settings are in place
    from pipelines.compile import compile_all

    _check_images(args.image_registry, args.image_tag)
    _print_json(compile_all(out, k8s=args.k8s, config_path=args.config, log_format=args.log_format))
    return 0


def _check_images(registry: str | None, tag: str | None) -> None:
    """Components name their image when their module loads: a registry or tag given after that
    (in a process that had already compiled) would be silently ignored, so it is refused."""
    from components import images  # lazy: loaded by the compile step just before

    if (registry is not None and registry != images.REGISTRY) or (tag is not None and tag != images.TAG):
        raise InputError(f"--image-registry/--image-tag: this process already loaded the components with "
                         f"{images.COMPONENT_IMAGE}; run `conveyor compile` in a new process")


def cmd_run(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from pipelines.local_run import run_local

    summary = run_local(config_path=args.config, store=args.store, workdir=_output_folder(args.workdir, "--workdir"),
                        world_size=args.world_size, strategy=args.strategy)
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(f"done in {summary['seconds']}s; summary: {summary['summary_path']}\n")
    return 0


def _print_table(header: tuple, rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, unless the help already says it or there is none."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "default" in help_text or action.default in (None, False, argparse.SUPPRESS) \
                or (action.option_strings == [] and action.nargs in ("+", None)):
            return help_text
        return help_text + " (default: %(default)s)"


STORE_HELP = ("store URI: file://PATH, a path, or s3://BUCKET[/PREFIX]; default $CONVEYOR_STORE, else the "
              "store `conveyor run` kept in this folder (.conveyor/s3, its S3 server started for the command "
              "when not running), else the file store .conveyor/store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", formatter_class=HelpFormatter,
                                     description="Conveyor: raw text to a monitored model on Kubeflow. Runs "
                                     "locally with no cluster by default.",
                                     epilog="Exit codes: 0 ok, 2 bad input, 3 bad config, 4 store unreachable, "
                                     "5 not found, 6 integrity, 7 gate failed, 8 search failed, 9 cluster, "
                                     "10 release refused, 70 internal error (README: Exit codes).")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group, name: str, help_text: str) -> argparse.ArgumentParser:
        return group.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)

    def store_opt(p):
        p.add_argument("--store", help=STORE_HELP)

    def config_opt(p):
        p.add_argument("--config", help="config YAML (default $CONVEYOR_CONFIG; `run` uses "
                       "configs/spamassassin.yaml)")

    def json_opt(p, what: str = "JSON instead of a table"):
        p.add_argument("--json", action="store_true", help=f"print {what}")

    def dataset_version_args(p):
        p.add_argument("name", help="dataset name")
        p.add_argument("version", nargs="?", default="latest", help="version id or 'latest'")

    data = command(sub, "data", "ingest, list and inspect dataset versions")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = command(dsub, "ingest", "read, clean and version a source (prints one JSON object)")
    p.add_argument("source", nargs="+", help="file or folder: path, file://… or s3://bucket/prefix")
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--format", choices=FORMATS, help="source format (default: auto-detect)")
    p.add_argument("--text-col", help="text column of tabular sources (default: text)")
    p.add_argument("--label-col", help="label column of tabular sources (default: label)")
    p.add_argument("--source-col", help="column naming each row's group (default: file name)")
    p.add_argument("--encoding", help="encoding of CSV/JSONL/text files (default: utf-8)")
    p.add_argument("--include", action="append", help="glob on file names in folders (repeatable)")
    p.add_argument("--parent", default="latest", help="parent version id, 'latest' or 'none'")
    p.add_argument("--engine", choices=["local", "spark"],
                   help="local: this process (flat memory); spark: Spark local[N] here (default: data.engine)")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_data_ingest)

    p = command(dsub, "versions", "list the versions of a dataset")
    p.add_argument("name", help="dataset name")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=cmd_data_versions)

    p = command(dsub, "show", "print a version's manifest (YAML; JSON with --json)")
    dataset_version_args(p)
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=cmd_data_show)

    p = command(dsub, "quarantine", "the rows a version quarantined: source file, row, reason, detail")
    dataset_version_args(p)
    p.add_argument("--reason", help="only rows quarantined for this reason (e.g. duplicate, empty_text, "
                   "binary_content; `data show` counts them by reason)")
    p.add_argument("--limit", type=int, default=50, help="rows printed (0: all)")
    p.add_argument("--raw", action="store_true", help="also print each row's raw content (the data itself: "
                   "personal data in production, so off by default)")
    json_opt(p, "every row as JSON (no limit)")
    store_opt(p)
    p.set_defaults(func=cmd_data_quarantine)

    p = command(dsub, "report", "data-quality report (HTML) and drift verdict (JSON)")
    dataset_version_args(p)
    p.add_argument("--reference", help="reference version for drift (default: none, statistics only)")
    p.add_argument("--html", help="write the self-contained HTML report to this file")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_data_report)

    runs = command(sub, "runs", "training runs recorded in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    p = command(rsub, "list", "every run, oldest first")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=cmd_runs_list)
    p = command(rsub, "show", "one run record (YAML; JSON with --json)")
    p.add_argument("run_id", help="run id (`conveyor runs list`)")
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=cmd_runs_show)
    p = command(rsub, "compare", "differing parameters and metrics of several runs")
    p.add_argument("run_ids", nargs="+", help="run ids (`conveyor runs list`)")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=cmd_runs_compare)

    audit = command(sub, "audit", "the append-only, hash-chained audit log: list its entries, or verify it")
    audit.add_argument("--model", help="only entries about this model")
    audit.add_argument("--since", help="only entries at or after this ISO date or UTC time")
    json_opt(audit)
    store_opt(audit)
    audit.set_defaults(func=cmd_audit_list)
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    p = command(asub, "verify", "check every entry's hash and its link to the one before (exit 6 when broken)")
    p.add_argument("--store", default=argparse.SUPPRESS, help=STORE_HELP)
    p.set_defaults(func=cmd_audit_verify)

    for verb, what in (("approve", "approve a staged version's entry to an environment, then release it there "
                                   "by the configured strategy (the conveyor-release pipeline)"),
                       ("reject", "reject a staged version's entry to an environment (production is untouched)")):
        p = command(sub, verb, what)
        p.add_argument("model", help="model name (the config's model_name)")
        p.add_argument("version", help="registry version (`conveyor pending` lists those awaiting a decision)")
        p.add_argument("--env", default="production", help="the environment it would enter")
        p.add_argument("--reason", required=True, help="why (recorded in the audit log with who and when)")
        if verb == "approve":
            p.add_argument("--no-release", action="store_true",
                           help="record the approval only; `conveyor release` releases later")
            p.add_argument("--workdir", default=".conveyor/runs", help="where the release run keeps its files")
        store_opt(p)
        config_opt(p)
        p.set_defaults(func=cmd_decide, verb=verb)

    p = command(sub, "pending", "versions awaiting approval (requests past their expiry are expired on the way)")
    p.add_argument("model", nargs="?", help="only this model")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=cmd_pending)

    p = command(sub, "release-job", "the chart's release Job (started by kubectl conveyor approve|reject): record "
                "the decision from $CONVEYOR_DECISION* with the identity in $CONVEYOR_APPROVER, then release")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_release_job)

    p = command(sub, "release", "release an approved version into an environment by the configured strategy "
                "(refused unless it passed staging and was approved)")
    p.add_argument("model", help="model name")
    p.add_argument("version", help="registry version")
    p.add_argument("--env", default="production", help="the environment to release into")
    p.add_argument("--workdir", default=".conveyor/runs", help="where the release run keeps its files")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_release)

    report = command(sub, "report", "reports computed from the store's records")
    resub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    p = command(resub, "delivery", "deployment frequency, lead time, change failure rate and time to restore, "
                "from the audit log alone")
    p.add_argument("--model", help="only this model (default: every model)")
    p.add_argument("--window", default="30d", help="how far back: 30d, 12h, 90m")
    p.add_argument("--push", metavar="URL", help="also push the figures as gauges to this Pushgateway (the "
                   "dashboard's Delivery row)")
    json_opt(p, "the figures as JSON")
    store_opt(p)
    p.set_defaults(func=cmd_report_delivery)

    models = command(sub, "models", "the model registry")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = command(msub, "list", "versions of a model with their aliases")
    p.add_argument("name", help="model name (the config's model_name, e.g. spam-classifier)")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=cmd_models_list)
    p = command(msub, "show", "a version's model card, files verified (YAML; JSON with --json)")
    p.add_argument("name", help="model name")
    p.add_argument("ref", nargs="?", default="candidate", help="version or alias (candidate, champion)")
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=cmd_models_show)

    p = command(msub, "report", "a version's compliance report (Markdown and HTML): lineage, gate, staging, "
                "approvals with who and why, releases, explanations, audit-log integrity")
    p.add_argument("name", help="model name")
    p.add_argument("ref", help="version or alias (production, staging, candidate)")
    p.add_argument("--out", default="reports", help="folder the two files go to (created when missing)")
    json_opt(p, "the written paths as JSON")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_models_report)

    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from pipelines.kubectl_plugin import add_canary_verbs

    for group in ("canary", "rollout"):
        verbs = command(sub, group, f"{group} on a KServe InferenceService (same as kubectl conveyor "
                        f"{group}): status, promote, rollback, pause, resume, analyze")
        add_canary_verbs(verbs)

    p = command(sub, "serve", "serve a registered model with a KServe model server on loopback")
    p.add_argument("model", help="NAME (alias champion), NAME@ALIAS, NAME@VERSION, s3://bucket/models/NAME/VERSION, "
                   "or a version folder (KServe's /mnt/models)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; the image's ServingRuntime passes 0.0.0.0)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port (about one per core); /metrics covers all of them")
    p.add_argument("--model-repository", action="store_true",
                   help=f"serve the OIP model-repository extension (load/unload) behind the bearer token in "
                        f"${REPOSITORY_TOKEN_ENV}; off by default (anyone reaching it could unload the model)")
    secure = p.add_argument_group("transport security and authentication (off by default)")
    secure.add_argument("--tls-cert", default=os.environ.get("CONVEYOR_TLS_CERT") or None,
                        help="serve HTTPS with this PEM certificate (chain); health and /metrics too")
    secure.add_argument("--tls-key", default=os.environ.get("CONVEYOR_TLS_KEY") or None,
                        help="the certificate's PEM private key")
    secure.add_argument("--tls-client-ca", default=os.environ.get("CONVEYOR_TLS_CLIENT_CA") or None,
                        help="mutual TLS: clients must present a certificate signed by this CA")
    secure.add_argument("--auth-token-file", default=os.environ.get("CONVEYOR_AUTH_TOKEN_FILE") or None,
                        help="require 'Authorization: Bearer <token>' (the file's one line) on every route but "
                             "health and /metrics (401 otherwise)")
    secure.add_argument("--metrics-token-file", default=os.environ.get("CONVEYOR_METRICS_TOKEN_FILE") or None,
                        help="require this bearer token on /metrics too (default: /metrics is open for Prometheus)")
    # KServe's runtime template can name the InferenceService only inside one container definition,
    # shared by every InferenceService of the runtime; an A/B or shadow candidate's own
    # InferenceService sets these two through its env (merged by name) to answer under the stable's
    # name and label its metrics as the canary (components/release/route.py).
    p.add_argument("--name", default=os.environ.get("CONVEYOR_SERVED_NAME") or None,
                   help="name in the URL paths (default: $CONVEYOR_SERVED_NAME, else the model name)")
    p.add_argument("--role", default=os.environ.get("CONVEYOR_ROLE") or "stable", choices=["stable", "canary"],
                   help="label on /metrics (default: $CONVEYOR_ROLE, else stable)")
    p.add_argument("--env", default=os.environ.get("CONVEYOR_ENV") or "production",
                   help="the environment it serves in, the `env` label on /metrics (default: $CONVEYOR_ENV, else "
                        "production)")
    p.add_argument("--log-sample-rate", type=float, default=0.0,
                   help="share of requests logged to the store (the monitor's input)")
    p.add_argument("--log-text", default=os.environ.get("CONVEYOR_LOG_TEXT") or "redacted",
                   choices=["redacted", "hashed", "raw", "none"],
                   help="how logged requests keep their text (config monitor.log_text; default: $CONVEYOR_LOG_TEXT, "
                        "else redacted: typed placeholders for emails, phones, IPs, cards, IBANs)")
    p.add_argument("--max-batch", type=int, default=256, help="instances per request; more is refused (400)")
    p.add_argument("--max-chars", type=int, default=100_000, help="characters per text; more is refused (400)")
    p.add_argument("--max-explain-batch", type=int, default=16, help="texts per :explain request")
    p.add_argument("--max-explain-tokens", type=int, default=64,
                   help="distinct tokens occluded per text in :explain (the most frequent; cost is this + 1 "
                        "forward rows per text)")
    chaos = p.add_argument_group("chaos (rehearse a bad rollout; off by default)")
    chaos.add_argument("--chaos-error-rate", type=float, default=0.0,
                       help="share of requests answered 500, spread evenly (0.3: 3 in every 10)")
    chaos.add_argument("--chaos-delay-ms", type=float, default=0.0, help="added latency per request")
    chaos.add_argument("--chaos-flip-labels", action="store_true", help="predict the other class")
    p.add_argument("--access-log", action="store_true",
                   help="log every request (KServe timing and uvicorn access lines); off by default: /metrics "
                        "counts them")
    store_opt(p)
    p.set_defaults(func=cmd_serve)

    p = command(sub, "monitor", "judge the served model's logged window now and record the retraining "
                "decision (prints one JSON object)")
    p.add_argument("--model", help="model name (default: the config's model_name)")
    p.add_argument("--html", help="also write the monitoring report (HTML) to this file")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_monitor)

    p = command(sub, "compile", "compile the pipelines to KFP YAML, and the custom resources they create")
    p.add_argument("--out", default="dist", help="folder to write to (created when missing)")
    p.add_argument("--k8s", action="store_true", help="also write KFP Pipeline/PipelineVersion resources")
    p.add_argument("--image-registry", help="registry the component images are pulled from, e.g. "
                   "registry.example.com/ml (default: $CONVEYOR_REGISTRY, else ghcr.io/conveyor-mlops; "
                   "`make images` builds them, push them there)")
    p.add_argument("--image-tag", help="tag of the component images (default: $CONVEYOR_IMAGE_TAG, else 0.1.0)")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="set CONVEYOR_LOG_FORMAT in every task's container: json makes each step log one JSON "
                        "object per line for the cluster's log stack (default: unset, the steps' text)")
    config_opt(p)
    p.set_defaults(func=cmd_compile)

    p = command(sub, "run", "run the pipeline locally (kfp.local + embedded S3) on the bundled data")
    config_opt(p)
    p.add_argument("--store", help="use this store instead of starting the embedded S3 server")
    p.add_argument("--workdir", default=".conveyor/runs", help="where local runs keep their files")
    p.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    p.add_argument("--world-size", type=int, metavar="N",
                   help="the train step trains with N processes under torchrun (DDP, gloo on CPU): with "
                        "best_trial: retrain, and in the continuous-training retrain; default: train.world_size")
    p.add_argument("--strategy", choices=("canary", "bluegreen", "ab", "shadow"),
                   help="how a blessed candidate is released against the champion; default: rollout.strategy")
    p.set_defaults(func=cmd_run)
    return parser


def _version() -> str:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.version import code_version

    return f"conveyor {code_version()}"


def with_loop_store(args: argparse.Namespace, func: Callable[[argparse.Namespace], int]) -> int:
    """A command that reads or writes the store, given none (no --store, no $CONVEYOR_STORE), in a
    folder where `conveyor run` kept its store (.conveyor/s3): it uses that store, through the
    loop's running server or one started for the command and stopped after it."""
    # lazy: only commands in a folder with a loop's store need it
    from pipelines.s3server import LoopStore, loop_data_dir

    data_dir = None
    serves_a_folder = args.func is cmd_serve and os.path.isdir(args.model)  # KServe's /mnt/models: no store
    if "store" in vars(args) and args.func is not cmd_run and not serves_a_folder and not args.store \
            and not os.environ.get("CONVEYOR_STORE"):
        data_dir = loop_data_dir()
    if data_dir is None:
        return func(args)
    with LoopStore(data_dir):
        return func(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return run_main("conveyor", lambda: with_loop_store(args, func))


if __name__ == "__main__":
    sys.exit(main())
