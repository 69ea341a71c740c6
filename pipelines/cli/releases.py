"""`conveyor approve|reject|pending|release|release-job`: decisions on staged versions, and releases."""

from __future__ import annotations

import json
import os
import sys

from components.common.errors import InputError
from components.common.storage import open_store
from components.composition.config import ConveyorConfig
from components.stages.release.cluster_approval import DECISION_ENV
from components.stages.release.environments import decide, pending, require_entry
from pipelines.cli.common import approval_config, output_folder, print_json, print_table


def cmd_decide(args) -> int:
    cfg = approval_config(args)
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
    record = release_locally(cfg, store.uri, version, env, output_folder(workdir, "--workdir"))
    print(f"{cfg.rollout.strategy} release of {model} {version} to {env}: {record.outcome} vs stable "
          f"{record.stable or 'none'}; record: {record.record_uri}")
    return 0


def cmd_release(args) -> int:
    cfg = approval_config(args)
    store = open_store(args.store)
    require_entry(store, args.model, args.version, args.env, cfg.environments)  # refused before anything starts
    return _release(cfg, store, args.model, args.version, args.env, args.workdir)


def cmd_release_job(args) -> int:
    """The chart's release Job (started by `kubectl conveyor approve|reject`): the decision, and for an
    approval the production release on KServe, with the identity the API server gave the plugin."""
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
    cfg = approval_config(args)
    store = open_store(args.store)
    record = decide(store, model, version, env, cfg.environments, verb, reason, actor=actor)
    print(f"{model} {version}: entry to {env} {record['decision']} by {username}")
    if len(cfg.environments) > 1:  # the request is decided: `kubectl conveyor pending` no longer lists it
        # lazy: the cluster SDK, only in the release Job
        from components.common.errors import ClusterError
        from components.stages.release.cluster_staging import mark_awaiting

        try:
            mark_awaiting(cfg.deploy, cfg.environments[-2], None)
        except ClusterError as exc:  # the decision is recorded; the mark is a convenience for `pending`
            sys.stderr.write(f"conveyor: warning: the pending mark on the staging InferenceService stays: {exc}\n")
    if verb == "reject":
        return 0
    # lazy: the release and the cluster SDK, only for an approval
    from components.stages.release.artifacts import ReplayRows
    from components.stages.release.cluster import run_cluster_rollout
    from components.stages.release.executor import release

    deploy = cfg.deploy.model_copy(update={"store": store.uri}) if store.uri.startswith("s3://") else cfg.deploy
    canary = cfg.canary

    def deliver(texts, labels, on_step):
        return run_cluster_rollout(store, deploy, canary, model, version, rollout=cfg.rollout, on_step=on_step,
                                   replay_rows=ReplayRows(texts, labels) if canary.cluster_replay_requests else None)

    outcome = release(store, model, version, env, cfg.environments, cfg.rollout.strategy, deliver, target="kserve")
    print(f"{cfg.rollout.strategy} release of {model} {version} to {env}: {outcome.outcome}")
    return 0 if outcome.promoted else 1


def cmd_pending(args) -> int:
    rows = pending(open_store(args.store), args.model)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no version awaits approval" + (f" for {args.model}" if args.model else ""))
        return 0
    print_table(("MODEL", "VERSION", "ENV", "REQUESTED", "EXPIRES", "CHECKED"),
                 [(r["model"], r["version"], r["env"], r["requested_at"], r["expires_at"],
                   f"{r['checked'].get('env')} {r['checked'].get('outcome')}") for r in rows])
    return 0
