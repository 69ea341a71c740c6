"""The `conveyor` command line's parser: one function per command group; each command's handler
is named, not imported (common.Handler), so building the parser loads no stage."""

from __future__ import annotations

import argparse
import os

from components.common.version import code_version
from components.stages.ingest.config import FORMATS
from pipelines.cli.common import REPOSITORY_TOKEN_ENV, Handler
from pipelines.kubectl_plugin import add_canary_verbs


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

    _data_commands(sub)
    _runs_commands(sub)
    _audit_commands(sub)
    _approvals_commands(sub)
    _report_commands(sub)
    _models_commands(sub)
    _cluster_commands(sub)
    _serve_commands(sub)
    _monitor_commands(sub)
    _pipelines_commands(sub)
    return parser


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


def _data_commands(sub) -> None:
    """`conveyor data ...`"""
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
    p.set_defaults(func=Handler("data.cmd_data_ingest"))

    p = command(dsub, "versions", "list the versions of a dataset")
    p.add_argument("name", help="dataset name")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=Handler("data.cmd_data_versions"))

    p = command(dsub, "show", "print a version's manifest (YAML; JSON with --json)")
    dataset_version_args(p)
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=Handler("data.cmd_data_show"))

    p = command(dsub, "quarantine", "the rows a version quarantined: source file, row, reason, detail")
    dataset_version_args(p)
    p.add_argument("--reason", help="only rows quarantined for this reason (e.g. duplicate, empty_text, "
                   "binary_content; `data show` counts them by reason)")
    p.add_argument("--limit", type=int, default=50, help="rows printed (0: all)")
    p.add_argument("--raw", action="store_true", help="also print each row's raw content (the data itself: "
                   "personal data in production, so off by default)")
    json_opt(p, "every row as JSON (no limit)")
    store_opt(p)
    p.set_defaults(func=Handler("data.cmd_data_quarantine"))

    p = command(dsub, "report", "data-quality report (HTML) and drift verdict (JSON)")
    dataset_version_args(p)
    p.add_argument("--reference", help="reference version for drift (default: none, statistics only)")
    p.add_argument("--html", help="write the self-contained HTML report to this file")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=Handler("data.cmd_data_report"))


def _runs_commands(sub) -> None:
    """`conveyor runs ...`"""
    runs = command(sub, "runs", "training runs recorded in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    p = command(rsub, "list", "every run, oldest first")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=Handler("runs.cmd_runs_list"))
    p = command(rsub, "show", "one run record (YAML; JSON with --json)")
    p.add_argument("run_id", help="run id (`conveyor runs list`)")
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=Handler("runs.cmd_runs_show"))
    p = command(rsub, "compare", "differing parameters and metrics of several runs")
    p.add_argument("run_ids", nargs="+", help="run ids (`conveyor runs list`)")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=Handler("runs.cmd_runs_compare"))


def _audit_commands(sub) -> None:
    """`conveyor audit [verify]`"""
    audit = command(sub, "audit", "the append-only, hash-chained audit log: list its entries, or verify it")
    audit.add_argument("--model", help="only entries about this model")
    audit.add_argument("--since", help="only entries at or after this ISO date or UTC time")
    json_opt(audit)
    store_opt(audit)
    audit.set_defaults(func=Handler("audit.cmd_audit_list"))
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    p = command(asub, "verify", "check every entry's hash and its link to the one before (exit 6 when broken)")
    p.add_argument("--store", default=argparse.SUPPRESS, help=STORE_HELP)
    p.set_defaults(func=Handler("audit.cmd_audit_verify"))


def _approvals_commands(sub) -> None:
    """`conveyor approve|reject|pending|release-job|release`"""
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
        p.set_defaults(func=Handler("releases.cmd_decide"), verb=verb)

    p = command(sub, "pending", "versions awaiting approval (requests past their expiry are expired on the way)")
    p.add_argument("model", nargs="?", help="only this model")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=Handler("releases.cmd_pending"))

    p = command(sub, "release-job", "the chart's release Job (started by kubectl conveyor approve|reject): record "
                "the decision from $CONVEYOR_DECISION* with the identity in $CONVEYOR_APPROVER, then release")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=Handler("releases.cmd_release_job"))

    p = command(sub, "release", "release an approved version into an environment by the configured strategy "
                "(refused unless it passed staging and was approved)")
    p.add_argument("model", help="model name")
    p.add_argument("version", help="registry version")
    p.add_argument("--env", default="production", help="the environment to release into")
    p.add_argument("--workdir", default=".conveyor/runs", help="where the release run keeps its files")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=Handler("releases.cmd_release"))


def _report_commands(sub) -> None:
    """`conveyor report delivery`"""
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
    p.set_defaults(func=Handler("report.cmd_report_delivery"))


def _models_commands(sub) -> None:
    """`conveyor models ...`"""
    models = command(sub, "models", "the model registry")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = command(msub, "list", "versions of a model with their aliases")
    p.add_argument("name", help="model name (the config's model_name, e.g. spam-classifier)")
    json_opt(p)
    store_opt(p)
    p.set_defaults(func=Handler("models.cmd_models_list"))
    p = command(msub, "show", "a version's model card, files verified (YAML; JSON with --json)")
    p.add_argument("name", help="model name")
    p.add_argument("ref", nargs="?", default="candidate", help="version or alias (candidate, champion)")
    json_opt(p, "JSON instead of YAML")
    store_opt(p)
    p.set_defaults(func=Handler("models.cmd_models_show"))

    p = command(msub, "report", "a version's compliance report (Markdown and HTML): lineage, gate, staging, "
                "approvals with who and why, releases, explanations, audit-log integrity")
    p.add_argument("name", help="model name")
    p.add_argument("ref", help="version or alias (production, staging, candidate)")
    p.add_argument("--out", default="reports", help="folder the two files go to (created when missing)")
    json_opt(p, "the written paths as JSON")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=Handler("models.cmd_models_report"))


def _cluster_commands(sub) -> None:
    """`conveyor canary|rollout ...` (the kubectl plugin's verbs)"""
    for group in ("canary", "rollout"):
        verbs = command(sub, group, f"{group} on a KServe InferenceService (same as kubectl conveyor "
                        f"{group}): status, promote, rollback, pause, resume, analyze")
        add_canary_verbs(verbs)


def _serve_commands(sub) -> None:
    """`conveyor serve`"""
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
    # name and label its metrics as the canary (components/stages/release/route.py).
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
    p.set_defaults(func=Handler("serve.cmd_serve"))


def _monitor_commands(sub) -> None:
    """`conveyor monitor`"""
    p = command(sub, "monitor", "judge the served model's logged window now and record the retraining "
                "decision (prints one JSON object)")
    p.add_argument("--model", help="model name (default: the config's model_name)")
    p.add_argument("--html", help="also write the monitoring report (HTML) to this file")
    store_opt(p)
    config_opt(p)
    p.set_defaults(func=Handler("monitor.cmd_monitor"))


def _pipelines_commands(sub) -> None:
    """`conveyor compile` and `conveyor run`"""
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
    p.set_defaults(func=Handler("pipeline.cmd_compile"))

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
    p.set_defaults(func=Handler("pipeline.cmd_run"))


def _version() -> str:
    return f"conveyor {code_version()}"
