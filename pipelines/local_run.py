"""`conveyor run`: the pipeline on one machine, no cluster.

Starts the embedded S3 server (unless a store is given), runs the compiled-equivalent pipeline
through `kfp.local` (SubprocessRunner: each component is a real subprocess executing the same
component code that runs in the cluster's pods), and writes a step-by-step summary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from kfp import local

from components.common import errors
from components.common.config import PROJECT_ROOT, validate_section
from components.common.entry import read_failure
from components.common.errors import ConfigError, ConveyorError, InputError, NotFoundError, StoreError
from components.common.storage import ENCRYPTION_ENV, KMS_KEY_ENV, open_store
from components.composition.config import ConveyorConfig, load_config, run_config
from components.stages.featurize.component import featurize_op
from components.stages.gate.component import gate_op
from components.stages.ingest.component import ingest_op
from components.stages.monitor.component import monitor_op
from components.stages.monitor.submit import retrain_parameters
from components.stages.notify.component import notify_op
from components.stages.registry.component import register_op
from components.stages.registry.store import resolve_version
from components.stages.release.artifacts import DeploymentRecord
from components.stages.release.component import release_op, stage_op
from components.stages.report.component import report_op
from components.stages.search.component import tune_op
from components.stages.search.spec import parse_spec
from components.stages.split.component import split_op
from components.stages.train.component import train_op
from pipelines.closed_loop import replay_production
from pipelines.data_pipeline import build_data_pipeline
from pipelines.monitoring_pipeline import build_monitoring_pipeline
from pipelines.progress_display import ProgressDisplay
from pipelines.release_pipeline import build_release_pipeline
from pipelines.s3server import EmbeddedS3
from pipelines.task_outputs import output_json, output_metadata, output_path
from pipelines.training_pipeline import build_training_pipeline


def resolve_sources(sources: list[str]) -> list[str]:
    """Relative paths in the config are relative to the project root (so any cwd works)."""
    out = []
    for s in sources:
        if "://" in s or os.path.isabs(s):
            out.append(s)
            continue
        path = PROJECT_ROOT / s
        if not path.exists():
            hint = " (run `make data` to fetch the bundled corpora)" if s.startswith("data/") else ""
            raise InputError(f"{s}: source not found under {PROJECT_ROOT}{hint}")
        out.append(str(path))
    return out


@contextlib.contextmanager
def _captured_output(log_path: Path):
    """Send this process's and the task subprocesses' output to a log file (fd-level)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            # kfp.local echoes task output with print(): redirect the Python streams as well.
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _failure_from_log(log_path: Path, step: str) -> ConveyorError:
    """The failed component's own error, from the structured line it ended with (entry.failure_line)."""

    found = read_failure(log_path.read_text(errors="replace"))
    if found:
        name, message = found
        cls = getattr(errors, name, ConveyorError)
        return cls(f"{step}: {message}")
    return ConveyorError(f"{step} failed; see the task log {log_path}")


def _newest_run_dir(root: Path, before: set[str]) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir() and p.name not in before and not p.name.startswith(".")]
    return max(runs, key=lambda p: p.stat().st_mtime)


class LocalPipelineRun:
    """Runs a pipeline function under kfp.local and collects what its tasks produced."""

    def __init__(self, workdir: Path, after_step=lambda: None):
        self.workdir = workdir
        self.after_step = after_step
        self.pipeline_root = workdir / "kfp"
        self.pipeline_root.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "tasks.log"
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(self.pipeline_root),
                   raise_on_error=True)

    def run(self, step: str, pipeline, **arguments) -> Path:
        before = {p.name for p in self.pipeline_root.iterdir()}
        with _captured_output(self.log):
            try:
                pipeline(**arguments)
                failed = None
            except Exception as exc:  # kfp.local raises RuntimeError naming the failed task
                failed = exc
        self.after_step()
        if failed is not None:
            error = _failure_from_log(self.log, step)
            if error.message.endswith(f"see the task log {self.log}"):  # no component error: say what kfp said
                error = ConveyorError(f"{step} failed: {' '.join(str(failed).split())[:600]} (task log {self.log})")
            raise error from failed
        return _newest_run_dir(self.pipeline_root, before)


def _monitor_step_summary(run_dir: Path, reports_dir: Path) -> dict[str, Any]:
    verdict = output_json(run_dir, monitor_op, "verdict")
    decision = output_json(run_dir, monitor_op, "decision")
    html_report = reports_dir / "monitoring-report.html"
    shutil.copyfile(output_path(run_dir, monitor_op, "report"), html_report)
    (reports_dir / "monitoring-verdict.json").write_text(json.dumps(verdict, indent=2, default=str))
    return {"verdict": {k: verdict.get(k) for k in ("status", "version", "window", "signals", "reason")},
            "input_drift": {k: (verdict.get("input") or {}).get(k) for k in ("drifted_share", "drift_share_threshold")}
            | {"drifted": sorted(k for k, c in (verdict.get("input") or {}).get("columns", {}).items()
                                 if c["drifted"])},
            "prediction_drift": {k: {"score": round(c["score"], 4), "drifted": c["drifted"]}
                                 for k, c in (verdict.get("prediction") or {}).get("columns", {}).items()},
            "accuracy": verdict.get("accuracy"), "decision": {"action": decision["action"],
                                                              "reasons": decision["reasons"],
                                                              "record": decision.get("record")},
            "report": str(html_report), "verdict_json": str(reports_dir / "monitoring-verdict.json")}


def _training_step_summary(run_dir: Path, reports_dir: Path, tag: str = "reference") -> dict[str, Any]:
    data = _data_step_summary(run_dir, reports_dir, tag)
    search = None
    if output_path(run_dir, tune_op, "trials") is not None:
        trials = output_json(run_dir, tune_op, "trials")
        leaderboard = reports_dir / f"search-leaderboard-{tag}.md"
        shutil.copyfile(output_path(run_dir, tune_op, "leaderboard"), leaderboard)
        states: dict[str, int] = {}
        for t in trials:
            states[t["state"]] = states.get(t["state"], 0) + 1
        succeeded = [t for t in trials if t["state"] == "succeeded"]
        best = max(succeeded, key=lambda t: t["value"]) if succeeded else {"params": {}}
        search = {"trials": len(trials), "states": states, "leaderboard": str(leaderboard),
                  "best_params": best["params"]}
    record = output_json(run_dir, train_op, "run_record")
    curve = reports_dir / f"training-curve-{record['run_id']}.html"
    shutil.copyfile(output_path(run_dir, train_op, "curve"), curve)
    card = output_json(run_dir, register_op, "model")
    decision = output_json(run_dir, gate_op, "blessing")
    gate_md = reports_dir / f"gate-{tag}.md"
    shutil.copyfile(output_path(run_dir, gate_op, "report"), gate_md)
    staged = output_path(run_dir, stage_op, "verification")  # None: the gate did not bless it
    staging = json.loads(staged.read_text()) if staged else None
    deployed = output_path(run_dir, release_op, "deployment")  # None: not blessed, not staged or awaiting approval
    deployment = DeploymentRecord.read(str(deployed)) if deployed else None
    # Alert & Stop: the notify tasks' outputs (notify-op, notify-op-2: one per condition)
    alerts = [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"**/{notify_op.name}*/notification"))]
    return {**data, **({"search": search} if search else {}),
            "notifications": [{k: a.get(k) for k in ("event", "severity", "summary", "delivery")} for a in alerts],
            "train": {"run_id": record["run_id"], "best_epoch": record["best_epoch"],
                      "validation": record["metrics"]["validation"], "test": record["metrics"]["test"],
                      "train_docs_per_s": record["train_docs_per_s"], "device": record["device"],
                      "curve": str(curve), "params": record["params"]["train"]},
            "model": {"name": card["name"], "version": card["version"], "uri": card["uri"], "alias": "candidate"},
            "gate": {"decision": decision["decision"], "reasons": decision["reasons"], "report": str(gate_md),
                     "champion": decision["champion"],
                     "infra_validation": (decision.get("infra_validation") or {}).get("detail")},
            "staging": None if staging is None else {k: staging.get(k) for k in ("next", "environment", "stages",
                                                                                  "expires_at")},
            "canary": None if deployment is None else {
                "outcome": deployment.outcome, "stable": deployment.stable,
                "strategy": deployment.strategy,
                "experiment": None if not deployment.experiment else {
                    k: deployment.experiment.get(k) for k in ("verdict", "winner", "reason", "effect", "low",
                                                                 "high", "p_value", "n")},
                "experiment_report": deployment.experiment_report_uri,
                "reason": deployment.reason, "record": deployment.record_uri,
                "actions": [h["action"] for h in (deployment.state or {}).get("history", [])]}}


def _data_step_summary(run_dir: Path, reports_dir: Path, tag: str) -> dict[str, Any]:
    ingest = output_json(run_dir, ingest_op, "result")
    verdict = output_json(run_dir, report_op, "verdict")
    html = reports_dir / f"data-report-{tag}-{ingest['version']}.html"
    shutil.copyfile(output_path(run_dir, report_op, "report"), html)
    split = output_metadata(run_dir, split_op, "counts")
    features = output_metadata(run_dir, featurize_op, "stats")
    return {
        "ingest": {k: ingest[k] for k in ("dataset", "version", "parent", "new", "rows_read", "rows_accepted",
                                          "rows_quarantined", "rows_total", "quarantine_reasons",
                                          "quarantine_uri", "manifest_uri")},
        "report": {"html": str(html), "drift": verdict.get("drift")},
        "split": {k: int(v) for k, v in split.items()},
        "features": features,
        "kfp_run_dir": str(run_dir),
    }


def run_local(config_path: str | None = None, store: str | None = None, workdir: str = ".conveyor/runs",
              progress=None, world_size: int | None = None, strategy: str | None = None) -> dict[str, Any]:
    cfg: ConveyorConfig = load_config(config_path)
    if strategy is not None:  # the release strategy of every blessed candidate in this run
        rollout = validate_section(type(cfg.rollout), {**cfg.rollout.model_dump(), "strategy": strategy},
                                   "--strategy")
        cfg = cfg.model_copy(update={"rollout": rollout})
    if world_size is not None:  # the train step's processes (torchrun); trials stay one process each
        train = validate_section(type(cfg.train), {**cfg.train.model_dump(), "world_size": world_size},
                                 "--world-size")
        cfg = cfg.model_copy(update={"train": train})
    reference = resolve_sources(cfg.data.reference)
    production = resolve_sources(cfg.data.production)
    if not reference:
        raise InputError("config data.reference lists no sources")
    train_too = bool(cfg.search)
    if train_too:
        parse_spec(cfg.search)  # a bad search spec is refused before anything starts
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(workdir).resolve() / run_id
    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("CONVEYOR_RUN_ID")
    os.environ["CONVEYOR_RUN_ID"] = f"local-{run_id}"  # each step's audit entries name this run (as KFP's run id)
    try:
        with ProgressDisplay(run_dir / "progress.jsonl") as display:
            return _run(cfg, config_path, store, workdir, run_id, run_dir, reference, production, train_too,
                        progress or display.say, display)
    finally:
        if previous is None:
            os.environ.pop("CONVEYOR_RUN_ID", None)
        else:
            os.environ["CONVEYOR_RUN_ID"] = previous


def _run(cfg: ConveyorConfig, config_path: str | None, store: str | None, workdir: str, run_id: str, run_dir: Path,
         reference: list[str], production: list[str], train_too: bool, progress, display: ProgressDisplay
         ) -> dict[str, Any]:
    started = time.monotonic()

    server = None
    saved_env = store_security_env(cfg.store)
    if store is None and not os.environ.get("CONVEYOR_STORE"):
        server = _embedded_store(cfg, workdir, progress)
        store = server.env()["CONVEYOR_STORE"]
    store = store or os.environ["CONVEYOR_STORE"]
    try:
        open_store(store).check()
        pipeline = build_data_pipeline(cfg, store=store)
        runner = LocalPipelineRun(run_dir, after_step=display.clear)
        summary: dict[str, Any] = {"run_id": run_id, "config": str(config_path or "configs/spamassassin.yaml"),
                                   "store": store, "steps": []}

        if train_too:
            spec = cfg.search
            progress(f"[1] training pipeline on the reference data ({len(reference)} sources): data, search "
                     f"({spec.get('algorithm', 'tpe')}, {spec.get('max_trials', 8)} trials, "
                     f"{spec.get('parallel_trials', 2)} in parallel), "
                     + ("keep the best trial's model" if cfg.best_trial == "keep" else "train the best")
                     + ", register, gate, staging, production")
            first = runner.run("training pipeline", build_training_pipeline(cfg, store=store, backend="local"),
                               sources=reference, dataset=cfg.data.dataset, store=store)
            step = _training_step_summary(first, run_dir / "reports")
            summary["steps"].append({"name": "reference data + training", **step})
        else:
            progress(f"[1] data pipeline on the reference data ({len(reference)} sources)")
            first = runner.run("reference data pipeline", pipeline, sources=reference, dataset=cfg.data.dataset,
                               store=store)
            step = _data_step_summary(first, run_dir / "reports", "reference")
            summary["steps"].append({"name": "reference data", **step})
        progress(_describe(step))

        if production and train_too:
            summary["steps"] += _closed_loop(cfg, store, production, step, runner, run_dir, progress)
        elif production:
            ref_version = step["ingest"]["version"]
            progress(f"[2] data pipeline on the production batch, drift vs {ref_version}")
            step2 = _version_production(cfg, store, production, runner, run_dir / "reports", ref_version)
            summary["steps"].append({"name": "production data", **step2})
            progress(_describe(step2))
        if server is not None:
            _compact(server, summary, progress)
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["task_log"] = str(runner.log)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        summary["summary_path"] = str(run_dir / "summary.json")
        return summary
    finally:
        if server is not None:
            server.restore_env()
            server.stop()
        _restore_env(saved_env)


def _embedded_store(cfg: ConveyorConfig, workdir: str, progress) -> EmbeddedS3:
    """SeaweedFS on loopback for this run (beside the work folder), its address exported to the steps."""
    if cfg.store.encryption not in ("none", "sse-s3"):
        raise ConfigError(f"store.encryption {cfg.store.encryption}: the embedded S3 server offers none or "
                          "sse-s3 (sse-kms needs a KMS; an sse-c key would not outlive the run)")
    progress(f"starting the embedded S3 server (SeaweedFS on 127.0.0.1, {'https' if cfg.store.tls else 'http'}"
             f", encryption at rest: {cfg.store.encryption})")
    s3_dir = Path(workdir).resolve().parent / "s3"
    server = EmbeddedS3(data_dir=str(s3_dir), tls=cfg.store.tls, encryption=cfg.store.encryption).start()
    server.export_env()
    return server


def _compact(server: EmbeddedS3, summary: dict[str, Any], progress) -> None:
    """The embedded store compacted after the run, its footprint in the summary and one line."""
    try:
        footprint = summary["store_footprint"] = server.compact()
    except StoreError as exc:  # housekeeping: the run's results stand, and the line says so
        progress(f"store: {exc.message}")
        return
    progress(f"store: {footprint['objects']} objects, {footprint['object_bytes'] / 2**20:.1f} MiB; "
             f"on disk {footprint['disk_bytes'] / 2**20:.1f} MiB after compaction "
             f"({footprint['disk_bytes_before'] / 2**20:.1f} MiB before)")


def store_security_env(store_cfg) -> dict[str, str | None]:
    """Point the steps at the config's encryption (an external store; `$CONVEYOR_STORE_ENCRYPTION`
    already set wins). Returns what to restore."""
    wanted = {ENCRYPTION_ENV: store_cfg.encryption}
    if store_cfg.kms_key_id:
        wanted[KMS_KEY_ENV] = store_cfg.kms_key_id
    saved = {}
    for key, value in wanted.items():
        if not os.environ.get(key):
            saved[key] = os.environ.get(key)
            os.environ[key] = value
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _version_production(cfg: ConveyorConfig, store: str, production: list[str], runner: LocalPipelineRun,
                        reports: Path, ref_version: str) -> dict[str, Any]:
    """The production batch as a new version (data pipeline only), drift reported vs the reference."""

    settings = cfg.data.settings_for("production").model_dump(mode="json", exclude_none=True)
    run_dir = runner.run("production data pipeline", build_data_pipeline(cfg, store=store), sources=production,
                         dataset=cfg.data.dataset, store=store, reference_version=ref_version,
                         source_settings=settings)
    return _data_step_summary(run_dir, reports, "production")


def _closed_loop(cfg: ConveyorConfig, store: str, production: list[str], first: dict[str, Any],
                 runner: LocalPipelineRun, run_dir: Path, progress) -> list[dict[str, Any]]:
    """Serve -> replay production -> monitor -> (retrain -> gate -> canary) or ingest only."""



    steps = []
    reports = run_dir / "reports"
    ref_version = first["ingest"]["version"]
    try:
        resolve_version(open_store(store), cfg.model_name, "champion")
    except NotFoundError:
        progress(f"[2] no production version of {cfg.model_name} is serving (the candidate was not blessed, failed "
                 "staging or awaits approval): nothing to monitor; the production batch is versioned only")
        step = _version_production(cfg, store, production, runner, reports, ref_version)
        progress(_describe(step))
        return [{"name": "production data (no champion serving)", **step}]
    progress("[2] production traffic: the champion serves the production batch (request logging on), then "
             "the batch's labels arrive as delayed feedback")
    replay = replay_production(open_store(store), cfg, production)
    steps.append({"name": "production traffic", "replay": replay})
    refused = f", {replay['rejected']} refused ({replay['first_rejection']})" if replay["rejected"] else ""
    progress(f"    {replay['answered']} requests answered by champion {replay['champion']}{refused}, "
             f"{replay['logged']} logged, labels delivered ({replay['seconds']} s)")

    progress("[3] monitoring pipeline: the logged window vs the champion's training data")
    monitored = runner.run("monitoring pipeline", build_monitoring_pipeline(cfg, store=store, with_submit=False),
                           store=store)
    mon = _monitor_step_summary(monitored, reports)
    steps.append({"name": "monitoring", **mon})
    progress(_describe_monitor(mon))

    if mon["decision"]["action"] == "retrain":
        progress("[4] continuous-training pipeline: the production batch as a new version, "
                 + ("search and train" if cfg.monitor.retrain == "search" else "retrain the champion's configuration")
                 + ", gate vs production, staging, production release")
        dump = cfg.model_dump(mode="json", exclude_none=True)
        params = {"config": run_config(dump), "features_config": dump["features"]}
        if cfg.monitor.retrain == "champion_params":
            params = retrain_parameters(open_store(store), cfg.model_name, params["config"], params["features_config"])
        retrained = runner.run("continuous-training pipeline",
                               build_training_pipeline(cfg, store=store, backend="local", continuous=True),
                               sources=production, dataset=cfg.data.dataset, store=store, **params,
                               reference_version=ref_version)
        step = _training_step_summary(retrained, reports, tag="retrain")
        steps.append({"name": "continuous training", **step})
    else:
        progress(f"[4] no retrain ({mon['decision']['action']}): the production batch is versioned only")
        step = _version_production(cfg, store, production, runner, reports, ref_version)
        steps.append({"name": "production data", **step})
    progress(_describe(step))
    return steps


def _describe_monitor(mon: dict[str, Any]) -> str:
    verdict, decision = mon["verdict"], mon["decision"]
    if verdict["status"] == "insufficient_data":
        first = f"    monitor: insufficient data ({verdict['reason']})"
    else:
        signals = ", ".join(f"{k} {'YES' if v else ('no' if v is not None else 'n/a')}"
                            for k, v in verdict["signals"].items())
        acc = mon["accuracy"] or {}
        live = (f"; live accuracy {acc['live_accuracy']:.4f} on {acc['labelled']} labelled vs test "
                f"{acc['champion_test_accuracy']:.4f}" if acc.get("live_accuracy") is not None else "")
        first = (f"    monitor: {verdict['window']['rows']} logged rows; {signals}; input features drifted "
                 f"{mon['input_drift']['drifted_share']:.0%} ({', '.join(mon['input_drift']['drifted']) or 'none'})"
                 f"{live}")
    return (f"{first}\n    decision: {decision['action']} ({'; '.join(decision['reasons'])})\n"
            f"    report: {mon['report']}")


def _describe(step: dict[str, Any]) -> str:
    i = step["ingest"]
    lines = [f"    dataset {i['dataset']} version {i['version']} (parent {i['parent'] or 'none'}, "
             f"{'new' if i['new'] else 'already existed'}): read {i['rows_read']}, accepted {i['rows_accepted']}, "
             f"quarantined {i['rows_quarantined']} {i['quarantine_reasons'] or ''}; {i['rows_total']} rows in version"]
    drift = step["report"]["drift"]
    if drift:
        cols = ", ".join(c for c, x in drift["columns"].items() if x["drifted"]) or "none"
        lines.append(f"    drift: {'YES' if drift['dataset_drift'] else 'no'} ({drift['drifted_share']:.0%} of "
                     f"columns; drifted: {cols})")
    lines.append(f"    report: {step['report']['html']}")
    s = step["split"]
    if s:
        lines.append(f"    split: train {s.get('train_rows')}, validation {s.get('validation_rows')}, "
                     f"test {s.get('test_rows')}; features: {int(step['features'].get('num_ids', 0))} ids, "
                     f"{step['features'].get('train_mean_ids', 0):.0f} per train doc")
    if "train" in step:
        tr, md = step["train"], step["model"]
        if "search" in step:
            sr = step["search"]
            states = ", ".join(f"{n} {k}" for k, n in sorted(sr["states"].items()))
            lines.append(f"    search: {sr['trials']} trials ({states}); best params {sr['best_params']}; "
                         f"leaderboard: {sr['leaderboard']}")
        else:
            lines.append(f"    no search: retrained the champion's configuration {tr['params']}")
        lines.append(f"    train: run {tr['run_id']} on {tr['device']}, best epoch {tr['best_epoch']}, validation "
                     f"accuracy {tr['validation']['accuracy']:.4f}, test accuracy {tr['test']['accuracy']:.4f} "
                     f"(macro-F1 {tr['test']['macro_f1']:.4f}); curve: {tr['curve']}")
        lines.append(f"    registered: model {md['name']} version {md['version']} (alias {md['alias']}) at {md['uri']}")
        gate = step["gate"]
        lines.append(f"    gate: {gate['decision']} vs champion {gate['champion'] or 'none'}"
                     + (f"; reasons: {'; '.join(gate['reasons'])}" if gate["reasons"] else "")
                     + f"; infra validation: {gate['infra_validation']}; report: {gate['report']}")
        for alert in step.get("notifications") or []:
            delivery = alert["delivery"] or {}
            sent = "sent" if delivery.get("delivered") else (delivery.get("skipped") or delivery.get("error"))
            lines.append(f"    ALERT {alert['event']} ({alert['severity']}): {alert['summary']} [{sent}]")
        staging, canary = step.get("staging"), step["canary"]
        for stage in (staging or {}).get("stages") or []:
            lines.append(f"    {stage['env']}: {'PASSED' if stage['passed'] else 'FAILED'} vs production "
                         f"{stage['stable'] or 'none'} on replayed labelled traffic ({stage['reason']})")
        if staging and staging["next"] == "awaiting_approval":
            model, version = step["model"]["name"], step["model"]["version"]
            lines.append(f"    {staging['environment']}: AWAITING APPROVAL until {staging['expires_at']}: "
                         f"conveyor approve {model} {version} --env {staging['environment']} --reason TEXT "
                         f"(or conveyor reject ...)")
        elif staging and staging["next"] == "release":
            lines.append(f"    {staging['environment']}: entry granted (approval: auto)")
        if canary is None:
            if staging is None:
                lines.append("    release: not run (candidate not blessed)")
        else:
            lines.append(f"    production release ({canary.get('strategy', 'canary')}): {canary['outcome']} vs stable "
                         f"{canary['stable'] or 'none'} ({canary['reason'] or ' -> '.join(canary['actions'])}); "
                         f"record: {canary['record']}")
            exp = canary.get("experiment")
            if exp:
                effect = "n/a" if exp["effect"] is None else f"{exp['effect']:+.4f}"
                lines.append(f"    experiment: {exp['verdict']}" + (f" ({exp['winner']})" if exp["winner"] else "")
                             + f", effect {effect} in [{exp['low']:+.4f}, {exp['high']:+.4f}], p {exp['p_value']:.3g},"
                             f" n {exp['n']}; {exp['reason']}; report: {canary['experiment_report']}")
    return "\n".join(lines)


def release_locally(cfg: ConveyorConfig, store: str, version: str, env: str, workdir: str) -> DeploymentRecord:
    """The conveyor-release pipeline through kfp.local (what `conveyor approve` starts): returns the
    deployment record the release step wrote."""
    run_dir = Path(workdir).resolve() / ("release-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = LocalPipelineRun(run_dir)
    done = runner.run("release pipeline", build_release_pipeline(cfg, store=store, target="local"),
                      candidate=version, store=store, environment=env)
    deployed = output_path(done, release_op, "deployment")
    if deployed is None:
        raise FileNotFoundError(f"{run_dir}: {release_op.name} wrote no 'deployment'")
    return DeploymentRecord.read(str(deployed))


__all__ = ["LocalPipelineRun", "release_locally", "resolve_sources", "run_local"]
