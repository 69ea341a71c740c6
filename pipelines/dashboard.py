"""The Grafana dashboard, generated with grafana-foundation-sdk (Grafana's own typed builders) into
charts/conveyor/files/dashboards/conveyor.json, which the chart ships as a ConfigMap labelled for
the Grafana sidecar. `make compile` regenerates it; tests/integration/test_dashboard.py runs every query it
holds against a real Prometheus scraping a real predictor and Pushgateway.

Rows: serving (predictor /metrics), release (conveyor_rollout_* from the rollout step's pushes),
monitoring (the monitor's pushed verdict), delivery (the four figures `conveyor report delivery
--push` computes from the audit log). Every query is filtered by the `model` variable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

OUT = Path(__file__).resolve().parents[1] / "charts" / "conveyor" / "files" / "dashboards" / "conveyor.json"
UID = "conveyor-model"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'model="$model"'
RATE = "$__rate_interval"


def _query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _series(title: str, unit: str, description: str, *queries: tuple[str, str]) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).description(description).datasource(DATASOURCE)
             .height(8).span(12))
    for expr, legend in queries:
        panel = panel.with_target(_query(expr, legend))
    return panel


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{SEL}}}[{RATE}]))"


def _p99(metric: str, by: str) -> str:
    return f"histogram_quantile(0.99, sum by (le, {by}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"


def _serving() -> list:
    """The predictor's own counters and histograms, by version and role (stable, canary, shadow)."""
    return [
        _series("Requests per second by version and role", "reqps",
                "Every predict/infer answer, counted by the predictor's request middleware.",
                (_rate("conveyor_requests_total", "version, role"), "{{version}} {{role}}")),
        _series("Error rate by version and role", "percentunit",
                "Share of answers that were 4xx or 5xx (conveyor_request_errors_total over all answers).",
                (f"{_rate('conveyor_request_errors_total', 'version, role')} / "
                 f"{_rate('conveyor_requests_total', 'version, role')}", "{{version}} {{role}}")),
        _series("p99 predict latency by version and role", "s",
                "Validation, featurize and forward, from the predictor's histogram.",
                (_p99("conveyor_request_latency_seconds", "version, role"), "{{version}} {{role}}")),
        _series("Predicted classes", "reqps", "Answers per class: a shift here is prediction drift as it happens.",
                (_rate("conveyor_predictions_total", "version, label"), "{{version}} {{label}}")),
        _series("p99 explain latency", "s", "KServe v1 :explain (exact occlusion, bounded per text).",
                (_p99("conveyor_explain_latency_seconds", "version"), "{{version}}")),
    ]


def _release() -> list:
    """The state the release step pushes after every analysis interval, and an A/B's experiment."""
    return [
        _series("Candidate traffic weight", "percent",
                "The candidate's share of traffic, pushed by the release step after every analysis interval.",
                (f"max by (candidate, strategy) (conveyor_rollout_weight_percent{{{SEL}}})",
                 "{{candidate}} ({{strategy}})")),
        statetimeline.Panel().title("Rollout phase").datasource(DATASOURCE).height(8).span(12)
        .description("Progressing, Paused, Promoted or RolledBack: the series that is 1.")
        .with_target(_query(f"max by (candidate, phase) (conveyor_rollout_phase{{{SEL}}}) == 1",
                            "{{candidate}} {{phase}}")),
        _series("Analysis decisions", "short",
                "Failed intervals so far (rollback at the threshold), and whether the last interval passed.",
                (f"max by (candidate) (conveyor_rollout_failed_checks{{{SEL}}})", "{{candidate}} failed checks"),
                (f"max by (candidate) (conveyor_rollout_last_interval_passed{{{SEL}}})",
                 "{{candidate}} last interval passed")),
        stat.Panel().title("Analysis intervals").datasource(DATASOURCE).height(8).span(12)
        .with_target(_query(f"max by (candidate) (conveyor_rollout_intervals{{{SEL}}})", "{{candidate}}")),
        _series("A/B experiment: samples per arm", "short",
                "Labelled answers per arm against the sample size planned up front (strategy ab).",
                (f"max by (arm) (conveyor_experiment_samples{{{SEL}}})", "{{arm}}"),
                (f"max(conveyor_experiment_required_samples{{{SEL}}})", "planned per arm")),
        _series("A/B experiment: effect and p-value", "short",
                "Candidate minus stable outcome rate with its always-valid interval, and the mSPRT p-value.",
                (f"max(conveyor_experiment_effect{{{SEL}}})", "effect"),
                (f"max(conveyor_experiment_effect_low{{{SEL}}})", "interval low"),
                (f"max(conveyor_experiment_effect_high{{{SEL}}})", "interval high"),
                (f"max(conveyor_experiment_p_value{{{SEL}}})", "p-value")),
    ]


def _monitoring() -> list:
    """The monitoring CronJob's verdict of its last window."""
    return [
        _series("Input drift", "percentunit", "Share of input features that drifted, and the window's verdict.",
                (f"max by (version) (conveyor_input_drift_share{{{SEL}}})", "{{version}} drifted share"),
                (f"max by (version) (conveyor_drift_detected{{{SEL}}})", "{{version}} drift detected")),
        _series("Live accuracy drop", "percentunit", "Test accuracy minus accuracy on labelled live requests.",
                (f"max by (version) (conveyor_live_accuracy_drop{{{SEL}}})", "{{version}}")),
        stat.Panel().title("Retraining decision").datasource(DATASOURCE).height(6).span(8)
        .description("1 when the last monitoring window decided to retrain.")
        .with_target(_query(f"max(conveyor_retrain_decision{{{SEL}}})", "retrain")),
        stat.Panel().title("Rows in the last window").datasource(DATASOURCE).height(6).span(8)
        .with_target(_query(f"max(conveyor_monitor_window_rows{{{SEL}}})", "rows")),
        stat.Panel().title("Since the last monitoring verdict").unit("s").datasource(DATASOURCE).height(6).span(8)
        .with_target(_query(f"time() - max(conveyor_monitor_last_run_timestamp_seconds{{{SEL}}})", "age")),
    ]


def _delivery() -> list:
    """The four delivery figures `conveyor report delivery --push` computes from the audit log."""
    return [
        stat.Panel().title("Deployment frequency").unit("short").datasource(DATASOURCE).height(6).span(6)
        .description("Production promotions per day over the window (`conveyor report delivery --push`).")
        .with_target(_query(f"max(conveyor_delivery_deployment_frequency_per_day{{{SEL}}})", "per day")),
        stat.Panel().title("Lead time for changes").unit("h").datasource(DATASOURCE).height(6).span(6)
        .description("Data version committed to a model trained on it in production: median and p90.")
        .with_target(_query(f"max by (quantile) (conveyor_delivery_lead_time_hours{{{SEL}}})", "q{{quantile}}")),
        stat.Panel().title("Change failure rate").unit("percentunit").datasource(DATASOURCE).height(6).span(6)
        .description("Production releases rolled back by the analysis or moved back within a day, over releases.")
        .with_target(_query(f"max(conveyor_delivery_change_failure_rate{{{SEL}}})", "failure rate")),
        stat.Panel().title("Time to restore").unit("h").datasource(DATASOURCE).height(6).span(6)
        .description("Median time from a failed release or a drift/accuracy alert to production healthy again.")
        .with_target(_query(f"max(conveyor_delivery_time_to_restore_hours{{{SEL}}})", "median")),
    ]


def build() -> dashboard.Dashboard:
    board = (dashboard.Dashboard("Conveyor: model in production").uid(UID)
             .tags(["conveyor", "kserve", "generated"]).refresh("30s").time("now-6h", "now")
             .description("Serving, release and monitoring of one Conveyor model (pipelines/dashboard.py).")
             .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
             .with_variable(dashboard.QueryVariable("model").label("Model").datasource(DATASOURCE)
                            .query("label_values(conveyor_requests_total, model)")
                            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)))
    for title, panels in (("Serving", _serving()), ("Release", _release()), ("Monitoring", _monitoring()),
                          ("Delivery (from the audit log)", _delivery())):
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def queries(board: dict) -> list[str]:
    """Every PromQL expression a dashboard holds: panel targets and query variables."""
    found = [t["expr"] for p in board.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            found.append(variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render())
    print(f"wrote {args.out} ({len(queries(json.loads(render())))} queries)")


if __name__ == "__main__":
    main()
