"""`kubectl conveyor` (installed as `kubectl-conveyor`, so kubectl finds it on PATH): canary
commands for Conveyor's KServe InferenceServices, using the current kubeconfig context.

    kubectl conveyor canary status   NAME [-n NS] [-o json]
    kubectl conveyor canary promote  NAME [-n NS]
    kubectl conveyor canary rollback NAME [-n NS]
    kubectl conveyor canary pause    NAME [-n NS]
    kubectl conveyor canary resume   NAME [-n NS]
    kubectl conveyor canary analyze  NAME [-n NS] [--prometheus URL] [--once]
    kubectl conveyor rollout assign  NAME KEY [-n NS]   # A/B: the arm header for a sticky key
    kubectl conveyor approve MODEL VERSION --reason TEXT [--env production] [-n NS]
    kubectl conveyor reject  MODEL VERSION --reason TEXT [--env production] [-n NS]
    kubectl conveyor pending [-n NS] [-o json]

approve and reject check who you are with the API server (SelfSubjectReview) and whether RBAC lets
you decide (SelfSubjectAccessReview: verb approve or reject on the environment's InferenceService),
then start the decision as a Job from the chart's release-job template (components.stages.release.
cluster_approval); the Job records it in the audit log and, for an approval, releases.

`kubectl conveyor rollout VERB` is the same group under the strategy-neutral name (blue-green:
`rollout promote` switches a previewed candidate to 100%, `--full` also skips post-promotion
analysis). The same verbs are `conveyor canary ...` and `conveyor rollout ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import yaml

from components.cluster import kube
from components.cluster.deploy import KubernetesInferenceServiceApi
from components.common.entry import run_main
from components.composition.config import load_config
from components.stages.release.cluster import CanaryController
from components.stages.release.cluster_status import format_status, status_report
from components.stages.release.kserve_state import read_config
from components.stages.release.prometheus import PrometheusMetricsSource

VERB_HELP = {
    "status": "show the traffic split, revisions, rollout phase and the last analysis",
    "promote": "send all traffic to the candidate now and make it the stable version (blue-green preview: "
               "switch to it, post-promotion analysis to follow)",
    "rollback": "send all traffic back to the stable version and drop the candidate",
    "pause": "stop the automated analysis; the current weight is held",
    "resume": "continue the automated analysis of a paused canary",
    "analyze": "run the analysis loop (Prometheus metrics) until promoted, rolled back or paused",
    "assign": "A/B on KServe: the arm a sticky key belongs to, as the header a client sends to the release route",
}


def add_canary_verbs(canary: argparse.ArgumentParser) -> None:
    verbs = canary.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, text in VERB_HELP.items():
        p = verbs.add_parser(verb, help=text, description=text, formatter_class=canary.formatter_class)
        p.add_argument("name", metavar="NAME", help="the InferenceService")
        p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else 'default')")
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
        p.add_argument("--context", help="kubeconfig context (default: the current one)")
        if verb == "status":
            p.add_argument("-o", "--output", choices=("text", "wide", "json", "yaml"), default="text",
                           help="text (default), wide (every recorded interval with each check), json or yaml")
        if verb == "promote":
            p.add_argument("--full", action="store_true",
                           help="blue-green: promote for good now, skipping post-promotion analysis")
        if verb == "assign":
            p.add_argument("key", metavar="KEY", help="the request's sticky key (e.g. a user id)")
        if verb == "analyze":
            p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (default: the rollout's config)")
            p.add_argument("--once", action="store_true", help="run a single interval, then exit")
            p.add_argument("--config", help="conveyor config whose canary section replaces the rollout's")
        p.set_defaults(func=run_canary_verb)


def _who(api, approvals) -> str:
    """Who runs a verb, as the API server authenticated them (SelfSubjectReview): it goes on the
    rollout and from there into the audit log. An injected API without `approvals`: "user"."""
    if approvals is None and api is not None:
        return "user"
    from components.stages.release.cluster_approval import KubernetesApprovalApi  # lazy: only the verbs need it

    return (approvals or KubernetesApprovalApi()).whoami()["username"]


def run_canary_verb(args, api=None, wait: Callable[[float], None] | None = None, routes=None,
                    approvals=None) -> int:
    kube.select(args.kubeconfig, args.context)
    injected = api
    api = api or KubernetesInferenceServiceApi()
    ctl = CanaryController(api, args.name, args.namespace or kube.default_namespace(),
                           log=lambda m: sys.stderr.write(m + "\n"), routes=routes)
    if args.verb == "status":
        obj = ctl.get()
        report = status_report(obj, ctl.route(obj))
        if args.output == "json":
            text = json.dumps(report, indent=2)
        elif args.output == "yaml":
            text = yaml.safe_dump(report, sort_keys=False).rstrip("\n")
        else:
            text = format_status(report, wide=args.output == "wide")
        sys.stdout.write(text + "\n")
        return 0
    if args.verb == "assign":
        sys.stdout.write(assign_header(ctl, args.key) + "\n")
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
    by = _who(injected, approvals)
    state = ctl.promote(full=args.full, by=by) if args.verb == "promote" else getattr(ctl, args.verb)(by=by)
    sys.stdout.write(f"{args.name}: {state.phase} at {state.weight}%\n")
    return 0


def assign_header(ctl: CanaryController, key: str) -> str:
    """`HEADER: ARM` for `key` in the A/B release running on the InferenceService's route: the same
    sha256 assignment the release step's replay uses, with the salt and split the route records."""
    # lazy: only this verb needs them
    from components.common.errors import ClusterError
    from components.stages.release.config import RolloutConfig
    from components.stages.release.experiment import assign_arm
    from components.stages.release.route import declared_split, route_state

    obj = ctl.get()
    route = ctl.route(obj)
    state = route_state(route) if route is not None else {}
    if state.get("mode") != "split":
        raise ClusterError(f"InferenceService {ctl.namespace}/{ctl.name} has no A/B release running on a route")
    share = declared_split(route, ctl.name)["candidate"]
    header = RolloutConfig.model_validate_json(obj["metadata"]["annotations"]["conveyor.dev/rollout-config"]) \
        .route.arm_header
    return f"{header}: {assign_arm(key, share, salt=state['salt'])}"


def add_decision_verbs(groups) -> None:
    for verb, text in (("approve", "approve a staged version's entry to production: a Job records it and releases "
                                   "by the configured strategy"),
                       ("reject", "reject a staged version's entry to production (a Job records it; production is "
                                  "untouched)")):
        p = groups.add_parser(verb, help=text, description=text)
        p.add_argument("model", metavar="MODEL", help="model name")
        p.add_argument("version", metavar="VERSION", help="registry version (kubectl conveyor pending lists them)")
        p.add_argument("--env", default="production", help="the environment it would enter (default: production)")
        p.add_argument("--reason", required=True, help="why (recorded in the audit log with who and when)")
        p.add_argument("--inference-service", help="the environment's InferenceService RBAC is checked on "
                       "(default: the config's, e.g. spam-classifier for production)")
        p.add_argument("--config", help="conveyor config naming the environments (default: the bundled one)")
        _target_options(p)
        p.set_defaults(func=run_decision)
    p = groups.add_parser("pending", help="versions awaiting approval (annotations on the staging InferenceServices)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text or json (default: text)")
    _target_options(p)
    p.set_defaults(func=run_pending)


def _target_options(p) -> None:
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else 'default')")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def run_decision(args, approvals=None) -> int:
    # lazy: only these verbs need them
    from components.stages.release.cluster_approval import KubernetesApprovalApi, start_decision
    from components.stages.release.cluster_staging import environment_target

    kube.select(args.kubeconfig, args.context)
    cfg = load_config(args.config)
    env = next((e for e in cfg.environments if e.name == args.env), None)
    if env is None:
        # lazy: only this refusal needs it
        from components.common.errors import InputError

        raise InputError(f"--env {args.env}: not in the config's environments "
                         f"({', '.join(e.name for e in cfg.environments)})")
    target = environment_target(cfg.deploy, env)
    namespace = args.namespace or env.namespace or kube.default_namespace()
    started = start_decision(approvals or KubernetesApprovalApi(), args.group, args.model, args.version, args.env,
                             args.reason, namespace, args.inference_service or target.name)
    sys.stdout.write(f"{args.group} {args.model} {args.version} --env {args.env} by {started['user']['username']}: "
                     f"job/{started['job']} started in {namespace}; follow it with `kubectl logs -f "
                     f"job/{started['job']} -n {namespace}`\n")
    return 0


def run_pending(args, approvals=None) -> int:
    # lazy: only this verb needs them
    from components.stages.release.cluster_approval import KubernetesApprovalApi, pending_on_cluster

    kube.select(args.kubeconfig, args.context)
    namespace = args.namespace or kube.default_namespace()
    rows = pending_on_cluster(approvals or KubernetesApprovalApi(), namespace)
    if args.output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        sys.stdout.write(f"no version awaits approval in {namespace}\n")
        return 0
    sys.stdout.write("\n".join(f"{r['model']} {r['version']} -> {r['env']}: requested {r['requested_at']}, expires "
                                f"{r['expires_at']} (staged on {r['inference_service']})" for r in rows) + "\n")
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
    add_decision_verbs(groups)
    return parser


def main(argv: list[str] | None = None, api=None, routes=None, approvals=None) -> int:
    args = build_parser().parse_args(argv)
    if args.group in ("approve", "reject", "pending"):
        return run_main("kubectl conveyor", lambda: args.func(args, approvals=approvals))
    return run_main("kubectl conveyor", lambda: run_canary_verb(args, api=api, routes=routes, approvals=approvals))


if __name__ == "__main__":
    sys.exit(main())
