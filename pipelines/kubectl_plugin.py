"""`kubectl conveyor` (installed as `kubectl-conveyor`, so kubectl finds it on PATH): canary
commands for Conveyor's KServe InferenceServices, using the current kubeconfig context.

    kubectl conveyor canary status   NAME [-n NS] [-o json]
    kubectl conveyor canary promote  NAME [-n NS]
    kubectl conveyor canary rollback NAME [-n NS]
    kubectl conveyor canary pause    NAME [-n NS]
    kubectl conveyor canary resume   NAME [-n NS]
    kubectl conveyor canary analyze  NAME [-n NS] [--prometheus URL] [--once]

`kubectl conveyor rollout VERB` is the same group under the strategy-neutral name (blue-green:
`rollout promote` switches a previewed candidate to 100%, `--full` also skips post-promotion
analysis). The same verbs are `conveyor canary ...` and `conveyor rollout ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from components.canary.cluster import CanaryController, format_status, read_config, status_report
from components.canary.prometheus import PrometheusMetricsSource
from components.common.entry import run_main
from components.config import load_config
from components.deploy.cluster import KubernetesInferenceServiceApi

VERB_HELP = {
    "status": "show the traffic split, revisions, rollout phase and the last analysis",
    "promote": "send all traffic to the candidate now and make it the stable version (blue-green preview: "
               "switch to it, post-promotion analysis to follow)",
    "rollback": "send all traffic back to the stable version and drop the candidate",
    "pause": "stop the automated analysis; the current weight is held",
    "resume": "continue the automated analysis of a paused canary",
    "analyze": "run the analysis loop (Prometheus metrics) until promoted, rolled back or paused",
}


def add_canary_verbs(canary: argparse.ArgumentParser) -> None:
    verbs = canary.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, text in VERB_HELP.items():
        p = verbs.add_parser(verb, help=text, description=text)
        p.add_argument("name", metavar="NAME", help="the InferenceService")
        p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else 'default')")
        p.add_argument("--context", help="kubeconfig context (default: the current one)")
        if verb == "status":
            p.add_argument("-o", "--output", choices=("text", "json"), default="text")
        if verb == "promote":
            p.add_argument("--full", action="store_true",
                           help="blue-green: promote for good now, skipping post-promotion analysis")
        if verb == "analyze":
            p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (default: the rollout's config)")
            p.add_argument("--once", action="store_true", help="run a single interval, then exit")
            p.add_argument("--config", help="conveyor config whose canary section replaces the rollout's")
        p.set_defaults(func=run_canary_verb)


def _namespace(args) -> str:
    if args.namespace:
        return args.namespace
    try:
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import config

        _, active = config.list_kube_config_contexts()
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: in-cluster or an error reported when the API is built
        return "default"


def run_canary_verb(args, api=None, wait: Callable[[float], None] | None = None) -> int:
    api = api or KubernetesInferenceServiceApi(context=args.context)
    ctl = CanaryController(api, args.name, _namespace(args), log=lambda m: sys.stderr.write(m + "\n"))
    if args.verb == "status":
        report = status_report(ctl.get())
        sys.stdout.write((json.dumps(report, indent=2) if args.output == "json" else format_status(report)) + "\n")
        return 0
    if args.verb == "analyze":

        obj = ctl.get()
        cfg = read_config(obj)
        if args.config:

            cfg = load_config(args.config).canary
        if args.prometheus:
            cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"url": args.prometheus})})
        ctl.ready_timeout_s = cfg.ready_timeout_s
        model = obj["metadata"].get("labels", {}).get("conveyor.dev/model", args.name)
        source = PrometheusMetricsSource(cfg.prometheus, model, cfg.interval_s)
        state = ctl.analyze(source, cfg, once=args.once, **({"wait": wait} if wait else {}))
        sys.stdout.write(json.dumps({"phase": state.phase, "weight": state.weight, "failed_checks": state.failed})
                         + "\n")
        return 0 if state.phase != "RolledBack" else 1
    state = ctl.promote(full=args.full) if args.verb == "promote" else getattr(ctl, args.verb)()
    sys.stdout.write(f"{args.name}: {state.phase} at {state.weight}%\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl conveyor", description="Conveyor canary commands for KServe "
                                     "InferenceServices (uses your current kubeconfig context).")
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for group in ("canary", "rollout"):
        verbs = groups.add_parser(group, help=f"{group}: " + ", ".join(VERB_HELP),
                                  description="Inspect and steer a rollout (canary or blue-green). Verbs: "
                                  + "; ".join(f"{k}: {v}" for k, v in VERB_HELP.items()))
        add_canary_verbs(verbs)
    return parser


def main(argv: list[str] | None = None, api=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main("kubectl conveyor", lambda: run_canary_verb(args, api=api))


if __name__ == "__main__":
    sys.exit(main())
