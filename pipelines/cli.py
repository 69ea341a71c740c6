"""The `conveyor` command line.

Every command prints results on stdout (JSON where a program will read it) and any failure as one
line on stderr, `conveyor: error: ...`, with an exit code per error class (see
components.common.errors). Set CONVEYOR_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from components.common.entry import run_main
from components.common.errors import InputError, NotFoundError
from components.config import ConveyorConfig, load_config
from components.ingest.config import FORMATS

REPOSITORY_TOKEN_ENV = "CONVEYOR_MODEL_REPOSITORY_TOKEN"


def _load(args) -> ConveyorConfig:
    if getattr(args, "config", None) or os.environ.get("CONVEYOR_CONFIG"):
        return load_config(args.config)
    return ConveyorConfig()  # generic defaults for ad-hoc sources


def _print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=None, sort_keys=False, default=str) + "\n")


# -- data -----------------------------------------------------------------------------------------

def cmd_data_ingest(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
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
                        engine_config={"spark": dump["data"]["spark"]}, on_cluster=False)
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
    sys.stdout.write(json.dumps(ref.manifest, indent=2, sort_keys=True) + "\n")
    return 0


def cmd_data_report(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.report.executor import report_for_versions

    cfg = _load(args)
    verdict = report_for_versions(open_store(args.store), args.name, args.version, args.reference,
                                  cfg.report, html_path=args.html)
    _print_json(verdict)
    return 0


# -- runs and models --------------------------------------------------------------------------------

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

    sys.stdout.write(json.dumps(read_run(open_store(args.store), args.run_id), indent=2) + "\n")
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
    rows = [(c["version"], ",".join(sorted(by_version.get(c["version"], []))) or "-", c["created_at"], c["run_id"],
             f"{c['metrics']['test'].get('accuracy', float('nan')):.4f}",
             f"{c['dataset']['name']}@{c['dataset']['version']}") for c in versions]
    _print_table(("VERSION", "ALIASES", "CREATED", "RUN", "TEST_ACC", "DATASET"), rows)
    return 0


def cmd_models_show(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from components.common.storage import open_store
    from components.registry.store import load, read_explanations

    store = open_store(args.store)
    loaded = load(store, args.name, args.ref)  # verifies every file's sha256
    card = dict(loaded.card)
    if (explanations := read_explanations(store, args.name, card["version"])) is not None:
        card["explanations"] = explanations  # global token importance, from the evaluate step
    sys.stdout.write(json.dumps(card, indent=2) + "\n")
    return 0


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
    chaos = {"error_rate": args.chaos_error_rate, "delay_ms": args.chaos_delay_ms,
             "flip_labels": args.chaos_flip_labels}
    token = None
    if args.model_repository:
        token = os.environ.get(REPOSITORY_TOKEN_ENV, "")
        if len(token) < 16:
            raise InputError(f"--model-repository needs a token of at least 16 characters in ${REPOSITORY_TOKEN_ENV} "
                             f"(got {len(token)}); it is read from the environment so that ps does not show it")
    return serve(store, name, ref, args.port, role=args.role, name=args.name, log_sample_rate=args.log_sample_rate,
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
    from components.monitor.executor import monitor_window

    cfg = load_config(args.config)
    model = args.model or cfg.model_name
    store = open_store(args.store)
    now = dt.datetime.now(dt.UTC)
    verdict, page = monitor_window(store, model, cfg.monitor, cfg.split, now=now)
    decision = trigger.decide(cfg.monitor.trigger, verdict, trigger.history(store, model), now)
    decision["record"] = trigger.record(store, model, decision)
    if cfg.monitor.pushgateway_url:
        # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
        from components.monitor.alerts import push

        push(cfg.monitor.pushgateway_url, verdict, decision)
    if args.html:
        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(page)
    _print_json({"status": verdict["status"], "signals": verdict.get("signals"), "window": verdict["window"],
                 "action": decision["action"], "reasons": decision["reasons"], "record": decision["record"]})
    return 0


# -- pipelines ------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from pipelines.compile import compile_all

    _print_json(compile_all(args.out, k8s=args.k8s, config_path=args.config))
    return 0


def cmd_run(args) -> int:
    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from pipelines.local_run import run_local

    summary = run_local(config_path=args.config, store=args.store, workdir=args.workdir, world_size=args.world_size,
                        strategy=args.strategy)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description="Conveyor: raw text to a monitored model "
                                     "on Kubeflow. Runs locally with no cluster by default.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_opt(p):
        p.add_argument("--store", help="store URI (file://… or s3://bucket); default $CONVEYOR_STORE")

    def config_opt(p):
        p.add_argument("--config", help="config YAML (default $CONVEYOR_CONFIG; `run` uses "
                       "configs/spamassassin.yaml)")

    data = sub.add_parser("data", help="ingest, list and inspect dataset versions")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = dsub.add_parser("ingest", help="read, clean and version a source (prints one JSON object)")
    p.add_argument("source", nargs="+", help="file or folder: path, file://… or s3://bucket/prefix")
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--format", choices=FORMATS, help="source format (default: auto-detect)")
    p.add_argument("--text-col", help="text column of tabular sources (default: text)")
    p.add_argument("--label-col", help="label column of tabular sources (default: label)")
    p.add_argument("--source-col", help="column naming each row's group (default: file name)")
    p.add_argument("--encoding", help="encoding of CSV/JSONL/text files (default: utf-8)")
    p.add_argument("--include", action="append", help="glob on file names in folders (repeatable)")
    p.add_argument("--parent", default="latest", help="parent version id, 'latest' (default) or 'none'")
    p.add_argument("--engine", choices=["local", "spark"],
                   help="local: this process (flat memory); spark: Spark local[N] here (default: data.engine)")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_data_ingest)

    p = dsub.add_parser("versions", help="list the versions of a dataset")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    store_opt(p)
    p.set_defaults(func=cmd_data_versions)

    p = dsub.add_parser("show", help="print a version's manifest")
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest")
    store_opt(p)
    p.set_defaults(func=cmd_data_show)

    p = dsub.add_parser("report", help="data-quality report (HTML) and drift verdict (JSON)")
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest")
    p.add_argument("--reference", help="reference version for drift (default: none)")
    p.add_argument("--html", help="write the self-contained HTML report here")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_data_report)

    runs = sub.add_parser("runs", help="training runs recorded in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    p = rsub.add_parser("list", help="every run, oldest first")
    p.add_argument("--json", action="store_true")
    store_opt(p)
    p.set_defaults(func=cmd_runs_list)
    p = rsub.add_parser("show", help="one run record")
    p.add_argument("run_id")
    store_opt(p)
    p.set_defaults(func=cmd_runs_show)
    p = rsub.add_parser("compare", help="differing parameters and metrics of several runs")
    p.add_argument("run_ids", nargs="+")
    p.add_argument("--json", action="store_true")
    store_opt(p)
    p.set_defaults(func=cmd_runs_compare)

    models = sub.add_parser("models", help="the model registry")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = msub.add_parser("list", help="versions of a model with their aliases")
    p.add_argument("name")
    store_opt(p)
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser("show", help="a version's model card (files verified)")
    p.add_argument("name")
    p.add_argument("ref", nargs="?", default="candidate", help="version or alias (default candidate)")
    store_opt(p)
    p.set_defaults(func=cmd_models_show)

    # lazy: each command imports only what it runs (`conveyor --help` starts in ~0.6 s)
    from pipelines.kubectl_plugin import add_canary_verbs

    for group in ("canary", "rollout"):
        verbs = sub.add_parser(group, help=f"{group} on a KServe InferenceService (same as kubectl conveyor "
                               f"{group}): status, promote, rollback, pause, resume, analyze")
        add_canary_verbs(verbs)

    p = sub.add_parser("serve", help="serve a registered model with a KServe model server on loopback")
    p.add_argument("model", help="NAME (alias champion), NAME@ALIAS, NAME@VERSION, s3://bucket/models/NAME/VERSION, "
                   "or a version folder (KServe's /mnt/models)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; the image's ServingRuntime passes 0.0.0.0)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port (about one per core); /metrics covers all of them")
    p.add_argument("--model-repository", action="store_true",
                   help=f"serve the OIP model-repository extension (load/unload) behind the bearer token in "
                        f"${REPOSITORY_TOKEN_ENV}; off by default (anyone reaching it could unload the model)")
    # KServe's runtime template can name the InferenceService only inside one container definition,
    # shared by every InferenceService of the runtime; an A/B or shadow candidate's own
    # InferenceService sets these two through its env (merged by name) to answer under the stable's
    # name and label its metrics as the canary (components/canary/route.py).
    p.add_argument("--name", default=os.environ.get("CONVEYOR_SERVED_NAME") or None,
                   help="name in the URL paths (default: $CONVEYOR_SERVED_NAME, else the model name)")
    p.add_argument("--role", default=os.environ.get("CONVEYOR_ROLE") or "stable", choices=["stable", "canary"],
                   help="label on /metrics (default: $CONVEYOR_ROLE, else stable)")
    p.add_argument("--log-sample-rate", type=float, default=0.0, help="share of requests logged to the store")
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--max-chars", type=int, default=100_000)
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

    p = sub.add_parser("monitor", help="judge the served model's logged window now and record the retraining "
                       "decision (prints one JSON object)")
    p.add_argument("--model", help="model name (default: the config's model_name)")
    p.add_argument("--html", help="also write the monitoring report (HTML) to this file")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("compile", help="compile the pipelines to YAML (default folder: dist/)")
    p.add_argument("--out", default="dist")
    p.add_argument("--k8s", action="store_true", help="also write KFP Pipeline/PipelineVersion resources")
    config_opt(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run the pipeline locally (kfp.local + embedded S3) on the bundled data")
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
