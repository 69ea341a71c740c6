"""Environments and approvals: staging before production, approval by policy or a person, the
refusals, and that no path reaches production without staging. Model servers are real KServe
servers on loopback; the CLI is called as a user calls it."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import yaml

from components.common import audit
from components.common.errors import NotFoundError, ReleaseRefused
from components.stages.registry import store as registry
from components.stages.release import environments as envs_
from components.stages.release.artifacts import ReplayRows
from components.stages.release.config import EnvironmentConfig, RolloutConfig, default_environments
from components.stages.release.executor import AWAITING_APPROVAL, FAILED, RELEASE, keep_replay_rows, release, stage
from pipelines.cli import main as conveyor
from tests.support.canary import FAST

# The healthy path is about the flow, not this machine's speed: a busy 2-core host's slowest request
# in an interval must not fail it (latency checks fail on purpose in test_rollout.py and
# test_cluster.py beside this file).
HEALTHY = FAST.model_copy(update={"max_p99_latency_ms": 2000.0, "max_latency_ratio": 100.0})
MANUAL = [EnvironmentConfig(name="staging"), EnvironmentConfig(name="production", approval="manual")]
MODEL = "toy-model"


def _replay_rows(store, version, texts, labels):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"text": texts, "label": labels}), sink)
    keep_replay_rows(store, MODEL, version, sink.getvalue())


def _gate(store, version, decision="BLESSED"):
    # the entry the gate step writes (components/stages/gate/executor.py); the kfp.local test runs the real one
    audit.append(store, "gate_decision", {"model": MODEL, "version": version},
                 {"decision": decision, "reasons": [] if decision == "BLESSED" else ["accuracy 0.41 < 0.8"]})


def _passed(store, version, env="staging"):
    envs_.record_verification(store, MODEL, version, env, {"passed": True, "reason": "2 passing intervals",
                                                           "stable": None, "checks": []})


def _config_file(tmp_path, **extra) -> str:
    path = tmp_path / "conveyor.yaml"
    path.write_text(yaml.safe_dump({"model_name": MODEL, **extra}))
    return str(path)


# -- config ---------------------------------------------------------------------------------------

def test_environments_default_to_staging_then_production_and_their_rules_are_checked():
    from components.common.errors import ConfigError
    from components.composition.config import config_from_dict

    assert [e.name for e in config_from_dict({}).environments] == ["staging", "production"]
    for bad, words in (([{"name": "production"}, {"name": "staging"}], "must end with 'production'"),
                       ([{"name": "qa"}, {"name": "qa"}, {"name": "production"}], "unique"),
                       ([{"name": "staging", "approval": "manual"}, {"name": "production"}], "production' only")):
        with pytest.raises(ConfigError, match=words):
            config_from_dict({"environments": bad})


def test_champion_is_another_name_for_production_and_an_old_champion_alias_still_resolves(own_two_versions):
    store, stable, cand, *_ = own_two_versions
    registry.set_alias(store, MODEL, "champion", cand)
    assert store.exists(f"models/{MODEL}/aliases/production.json")
    assert registry.resolve_version(store, MODEL, "production") == registry.resolve_version(store, MODEL, "champion")
    # a store written before environments: only champion.json
    store.delete(f"models/{MODEL}/aliases/production.json")
    store.write_json(f"models/{MODEL}/aliases/champion.json", {"version": stable})
    assert registry.resolve_version(store, MODEL, "production") == stable
    assert registry.aliases(store, MODEL)["production"] == stable


# -- staging on real model servers --------------------------------------------------------------

def test_staging_verifies_a_healthy_candidate_against_production_and_auto_approval_releases_it(own_two_versions):
    store, stable, cand, texts, labels = own_two_versions
    _replay_rows(store, cand, texts, labels)
    lines: list[str] = []

    def verify(env):
        from components.stages.release.staging import verify_local

        return verify_local(store, MODEL, cand, texts, labels, HEALTHY, env, log=lines.append,
                            requests_per_interval=80)

    result = stage(store, MODEL, cand, default_environments(), verify, log=lines.append)
    assert result["next"] == RELEASE, lines
    [staged] = result["stages"]
    assert staged["passed"] and staged["stable"] == stable
    record = envs_.verification(store, MODEL, cand, "staging")
    names = {c["name"] for c in record["checks"]}
    assert {"success_rate", "p99_latency_ms", "labelled_accuracy_drop_vs_stable", "agreement_with_stable"} <= names
    assert registry.resolve_version(store, MODEL, "staging") == cand
    assert registry.resolve_version(store, MODEL, "production") == stable  # staging moved no production traffic
    granted = envs_.decision(store, MODEL, cand, "production")
    assert granted["decision"] == "granted" and granted["by"]["policy"] == "auto"

    events = [e["event"] for e in audit.read_entries(store)]
    assert events[-3:] == ["staging_result", "alias_moved", "approval_granted"]


def test_staging_fails_a_candidate_that_errors_and_production_never_sees_it(own_two_versions):
    from components.stages.release.staging import verify_local

    store, stable, cand, texts, labels = own_two_versions
    result = stage(store, MODEL, cand, default_environments(),
                   lambda env: verify_local(store, MODEL, cand, texts, labels, FAST, env, log=lambda _m: None,
                                            requests_per_interval=80, chaos=["--chaos-error-rate", "0.3"]),
                   log=lambda _m: None)
    assert result["next"] == FAILED
    assert "success_rate" in result["stages"][0]["reason"]
    assert envs_.decision(store, MODEL, cand, "production") is None
    with pytest.raises(ReleaseRefused, match=f"{cand} may not enter production: it failed staging"):
        envs_.require_entry(store, MODEL, cand, "production", default_environments())
    assert registry.resolve_version(store, MODEL, "production") == stable


# -- manual approval ---------------------------------------------------------------------------

def test_manual_approval_stops_at_staging_then_approve_releases_with_the_configured_strategy(own_two_versions,
                                                                                            tmp_path, capsys):
    from components.stages.release.local import run_local_canary

    store, stable, cand, texts, labels = own_two_versions
    _replay_rows(store, cand, texts, labels)
    _gate(store, cand)
    result = stage(store, MODEL, cand, MANUAL, lambda env: {"passed": True, "reason": "verified", "stable": stable,
                                                            "checks": []}, log=lambda _m: None)
    assert result["next"] == AWAITING_APPROVAL and result["expires_at"]
    with pytest.raises(ReleaseRefused, match="entry is not granted \\(awaiting approval\\)"):
        envs_.require_entry(store, MODEL, cand, "production", MANUAL)

    assert conveyor(["pending", MODEL, "--store", store.uri]) == 0
    table = capsys.readouterr().out
    assert cand in table and "staging passed" in table
    config = _config_file(tmp_path, environments=[e.model_dump() for e in MANUAL])
    assert conveyor(["approve", MODEL, cand, "--env", "production", "--reason", "reviewed the staging report",
                     "--no-release", "--store", store.uri, "--config", config]) == 0
    assert "entry to production granted by" in capsys.readouterr().out
    assert conveyor(["pending", "--json", "--store", store.uri]) == 0
    assert json.loads(capsys.readouterr().out) == []

    record = release(store, MODEL, cand, "production", MANUAL, "bluegreen",
                     lambda t, lab, on_step: run_local_canary(
                         store, MODEL, cand, t, lab, HEALTHY, requests_per_interval=80, log=lambda _m: None,
                         rollout=RolloutConfig(strategy="bluegreen", bluegreen={"scale_down_delay_s": 0}),
                         on_step=on_step))
    assert record.outcome == "Promoted" and record.strategy == "bluegreen" and record.env == "production"
    assert registry.resolve_version(store, MODEL, "production") == cand
    entries = audit.read_entries(store)
    granted = next(e for e in entries if e["event"] == "approval_granted")
    assert granted["details"]["reason"] == "reviewed the staging report" and granted["actor"]["name"]
    steps = [e["details"]["outcome"] for e in entries if e["event"] == "release_step"]
    assert steps[-1] == "promote" and "switch" in steps
    order = [e["event"] for e in entries]
    order = order[order.index("approval_requested"):]  # the copied shared store may hold earlier releases
    assert order.index("approval_granted") < order.index("release_started") < order.index("release_finished")
    assert audit.verify(store) == len(entries)

    # the version's compliance report, from those records
    config = _config_file(tmp_path, environments=[e.model_dump() for e in MANUAL])
    out = tmp_path / "reports"
    assert conveyor(["models", "report", MODEL, "production", "--out", str(out), "--store", store.uri,
                     "--config", config]) == 0
    assert "audit log intact" in capsys.readouterr().out
    md = (out / f"{MODEL}-{cand}-compliance.md").read_text()
    for words in ("## Lineage", "## Gate", "| staging | verification |", "| production | decision |",
                  "reviewed the staging report", granted["actor"]["name"], "release_finished", "Promoted",
                  "## Explanations", "Hash chain intact"):
        assert words in md, words
    page = (out / f"{MODEL}-{cand}-compliance.html").read_text()
    assert page.startswith("<!doctype html>") and "<h2>Release history</h2>" in page
    # an edited entry: the report says so, and the command exits 6 (integrity)
    first = store.list("audit/log/")[0]
    store.write_bytes(first, store.read_bytes(first).replace(b'"event": "', b'"event": "x', 1))
    assert conveyor(["models", "report", MODEL, cand, "--out", str(out), "--store", store.uri,
                     "--config", config]) == 6
    assert "Hash chain BROKEN" in (out / f"{MODEL}-{cand}-compliance.md").read_text()


def test_reject_leaves_production_untouched_and_the_decision_is_final(own_two_versions, tmp_path, capsys):
    store, stable, cand, _texts, _labels = own_two_versions
    _gate(store, cand)
    stage(store, MODEL, cand, MANUAL, lambda env: {"passed": True, "reason": "verified", "stable": stable},
          log=lambda _m: None)
    config = _config_file(tmp_path, environments=[e.model_dump() for e in MANUAL])
    args = ["--store", store.uri, "--config", config]
    assert conveyor(["reject", MODEL, cand, "--reason", "drops recall on the billing slice", *args]) == 0
    capsys.readouterr()
    assert registry.resolve_version(store, MODEL, "production") == stable
    # refused, naming the version and why, and nothing changes
    before = len(audit.read_entries(store))
    assert conveyor(["approve", MODEL, cand, "--reason", "changed my mind", "--no-release", *args]) == 10
    err = capsys.readouterr().err
    assert f"cannot approve {MODEL} {cand} for production: it was already rejected" in err
    assert conveyor(["release", MODEL, cand, *args]) == 10
    assert "entry is not granted (rejected" in capsys.readouterr().err
    assert len(audit.read_entries(store)) == before
    rejected = [e for e in audit.read_entries(store) if e["event"] == "approval_rejected"]
    assert rejected[0]["details"]["reason"] == "drops recall on the billing slice"


@pytest.mark.parametrize("case, expected_exit, words", [
    ("unknown", 5, "has no version 'feedbeefcafe'"),
    ("unblessed", 10, "it was not blessed (gate NOT_BLESSED: accuracy 0.41 < 0.8)"),
    ("not_staged", 10, "it never passed staging"),
])
def test_approving_what_may_not_be_approved_is_refused_and_changes_nothing(own_two_versions, tmp_path, capsys,
                                                                           case, expected_exit, words):
    store, _stable, cand, *_ = own_two_versions
    version = "feedbeefcafe" if case == "unknown" else cand
    _gate(store, cand, "NOT_BLESSED" if case == "unblessed" else "BLESSED")
    before = store.list("")
    assert conveyor(["approve", MODEL, version, "--reason", "ok", "--no-release", "--store", store.uri]) \
        == expected_exit
    assert words in capsys.readouterr().err
    assert store.list("") == before


def test_a_request_past_its_expiry_is_expired_once_and_cannot_be_approved(own_two_versions):
    store, stable, cand, *_ = own_two_versions
    _gate(store, cand)
    short = [EnvironmentConfig(name="staging"),
             EnvironmentConfig(name="production", approval="manual", approval_ttl_hours=1)]
    stage(store, MODEL, cand, short, lambda env: {"passed": True, "reason": "verified", "stable": stable},
          log=lambda _m: None)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert envs_.expire_overdue(store, MODEL, cand, "production", at=later)
    assert envs_.expire_overdue(store, MODEL, cand, "production", at=later) is False  # decided already
    assert [e["event"] for e in audit.read_entries(store)].count("approval_expired") == 1
    assert envs_.pending(store, MODEL) == []
    with pytest.raises(ReleaseRefused, match="already expired"):
        envs_.decide(store, MODEL, cand, "production", short, "approve", "late")


def test_two_people_deciding_at_once_cannot_both_win(own_two_versions):
    store, stable, cand, *_ = own_two_versions
    _gate(store, cand)
    stage(store, MODEL, cand, MANUAL, lambda env: {"passed": True, "reason": "verified", "stable": stable},
          log=lambda _m: None)
    outcomes: list[str] = []

    def decide(verb):
        try:
            envs_.decide(store, MODEL, cand, "production", MANUAL, verb, f"{verb} by a thread",
                         actor={"name": f"{verb}-person"})
            outcomes.append(verb)
        except ReleaseRefused as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=decide, args=(verb,)) for verb in ("approve", "reject") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if not o.startswith("refused")]
    assert len(winners) == 1, outcomes
    decisions = [e for e in audit.read_entries(store) if e["event"] in ("approval_granted", "approval_rejected")]
    assert len(decisions) == 1 and decisions[0]["actor"]["name"] == f"{winners[0]}-person"
    assert audit.verify(store) > 0


# -- no path to production without staging ------------------------------------------------------

def test_a_version_that_never_passed_staging_cannot_reach_production_by_any_path(own_two_versions, tmp_path,
                                                                                 capsys):
    """The CLI (approve, release), the pipeline's release step and the release pipeline all refuse
    before a server starts or a record is written. (The kubectl plugin's approve runs this same
    check in the release Job: tests/unit/stages/release/test_cluster_approval.py.)"""
    from kfp.dsl import Artifact

    from components.stages.release.component import release_op

    store, stable, cand, texts, labels = own_two_versions
    _gate(store, cand)
    _replay_rows(store, cand, texts, labels)
    before = store.list("")
    assert conveyor(["approve", MODEL, cand, "--reason", "ship it", "--store", store.uri]) == 10
    assert "it never passed staging" in capsys.readouterr().err
    assert conveyor(["release", MODEL, cand, "--store", store.uri]) == 10
    assert "may not enter production: it never passed staging" in capsys.readouterr().err
    # the KFP component's own function, as its container runs it
    deployment = Artifact(uri=str(tmp_path / "deployment"))
    deployment.path = str(tmp_path / "deployment")
    with pytest.raises(ReleaseRefused, match="never passed staging"):
        release_op.python_func(store=store.uri, model_name=MODEL, candidate=cand, canary_config={},
                               deployment=deployment)
    # staged, but production entry not granted: still refused
    _passed(store, cand)
    with pytest.raises(ReleaseRefused, match="entry is not granted"):
        release_op.python_func(store=store.uri, model_name=MODEL, candidate=cand, canary_config={},
                               deployment=deployment)
    assert registry.resolve_version(store, MODEL, "production") == stable
    assert not any(k.startswith("deployments/") for k in store.list("") if k not in before)


def test_unknown_environment_and_missing_reason_are_refused(own_two_versions):
    store, _stable, cand, *_ = own_two_versions
    with pytest.raises(ReleaseRefused, match="no environment 'prod'"):
        envs_.decide(store, MODEL, cand, "prod", MANUAL, "approve", "ok")
    with pytest.raises(ReleaseRefused, match="--reason is required"):
        envs_.decide(store, MODEL, cand, "production", MANUAL, "approve", "  ")
    with pytest.raises(NotFoundError):
        envs_.require_entry(store, MODEL, "0123456789ab", "production", MANUAL)


def test_staging_on_kserve_verifies_through_each_inference_service(own_two_versions):
    """The cluster staging path: the staging InferenceService (its own name, env label, CONVEYOR_ENV)
    applied through the InferenceService API (the in-memory stand-in that validates against the
    upstream CRD and KServe's webhook), labelled rows sent through the staging and production
    InferenceServices' status.url (real model servers here), each version's metrics read per
    interval (scraped /metrics standing in for Prometheus), and the verdict."""
    from components.cluster.deploy_config import DeployConfig
    from components.cluster.isvc import build_inference_service
    from components.stages.release.cluster_staging import environment_target, mark_awaiting, verify_cluster
    from components.stages.release.local import LocalMetricsSource
    from components.stages.serve.infra import ServerProcess
    from tests.standins.kubernetes.objects import InferenceServices

    store, stable, cand, texts, labels = own_two_versions
    deploy = DeployConfig(namespace="team-a")
    staging = EnvironmentConfig(name="staging")
    target = environment_target(deploy, staging)
    assert (target.name, target.namespace) == ("spam-classifier-staging", "team-a")
    # Latency limits far above a loaded machine's p99: this test is about the cluster path, not timing
    # (it once failed on FAST's 40 ms while another test suite ran beside it).
    cfg = FAST.model_copy(update={"cluster_replay_requests": 60, "interval_s": 1, "max_p99_latency_ms": 5000,
                                  "max_latency_ratio": 50.0})
    with ServerProcess(f"{MODEL}@{cand}", store.uri, name=target.name, role="canary", env="staging") as staged, \
            ServerProcess(f"{MODEL}@{stable}", store.uri, name=deploy.name) as production:
        api = InferenceServices()
        api.service_urls = {target.name: staged.url, deploy.name: production.url}
        api.create(build_inference_service(deploy, MODEL, stable))
        source = LocalMetricsSource({cand: f"{staged.url}/metrics", stable: f"{production.url}/metrics"}, MODEL)
        source.snapshot(cand), source.snapshot(stable)
        result = verify_cluster(store, deploy, cfg, staging, MODEL, cand, ReplayRows(texts, labels), api=api,
                                source=source, wait=lambda _s: None, log=lambda _m: None)
        assert result["passed"], result["intervals"]
        assert result["inference_service"] == "team-a/spam-classifier-staging" and result["stable"] == stable
        assert {"success_rate", "labelled_accuracy_drop_vs_stable"} <= {c["name"] for c in result["checks"]}
        obj = api.get(target.name, "team-a")
        assert obj["metadata"]["labels"]["conveyor.dev/env"] == "staging"
        assert {"name": "CONVEYOR_ENV", "value": "staging"} in obj["spec"]["predictor"]["model"]["env"]
        assert obj["spec"]["predictor"]["model"]["storageUri"].endswith(f"/{cand}")
        assert any(e["reason"] == "StagingAnalysis" for e in api.events)
        mark_awaiting(deploy, staging, {"model": MODEL, "version": cand, "env": "production",
                                        "requested_at": "t0", "expires_at": "t1"}, api=api)
        assert json.loads(api.get(target.name, "team-a")["metadata"]["annotations"][
            "conveyor.dev/awaiting-approval"])["version"] == cand
        mark_awaiting(deploy, staging, None, api=api)
        assert "conveyor.dev/awaiting-approval" not in api.get(target.name, "team-a")["metadata"]["annotations"]
