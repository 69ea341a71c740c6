"""The quality gate: explicit checks against absolute thresholds and the current champion.

The decision is an artifact (TFX-style blessing): blessed or not, with every check's value,
threshold and result, so a refused candidate always shows why.
"""

from __future__ import annotations

from typing import Any

from components.common.errors import GateFailed
from components.stages.gate.artifacts import Blessing
from components.stages.gate.config import GateConfig


def _check(name: str, value: float, threshold: float, passed: bool, kind: str, **extra) -> dict[str, Any]:
    return {"check": name, "kind": kind, "value": value, "threshold": threshold, "passed": bool(passed), **extra}


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig,
           infra: dict[str, Any] | None = None, unusable: dict[str, Any] | None = None) -> dict[str, Any]:
    """Blessed only when every check passes. With no champion, only absolute checks apply."""
    checks = []
    if unusable is not None:
        checks.append(_check("champion_comparable", 0.0, 1.0, config.on_unusable_champion == "absolute_only",
                             "regression", detail=f"champion {unusable['version']} cannot be loaded: "
                                                  f"{unusable['reason']} (gate.on_unusable_champion: "
                                                  f"{config.on_unusable_champion})"))
    checks += [
        _check("accuracy", candidate["accuracy"], config.min_accuracy,
               candidate["accuracy"] >= config.min_accuracy, "absolute"),
        _check("macro_f1", candidate["macro_f1"], config.min_macro_f1,
               candidate["macro_f1"] >= config.min_macro_f1, "absolute"),
        _check("ece", candidate["ece"], config.max_ece, candidate["ece"] <= config.max_ece, "absolute"),
        _check("batch64_latency_ms", candidate["batch64_latency_ms"], config.max_batch64_latency_ms,
               candidate["batch64_latency_ms"] <= config.max_batch64_latency_ms, "absolute"),
    ]
    if config.min_cv_accuracy_lower is not None:
        cv = candidate.get("cv")
        if cv is None:
            checks.append(_check("cv_accuracy_lower", 0.0, config.min_cv_accuracy_lower, False, "absolute",
                                 detail="no cross-validation (evaluate.cv_folds is 0)"))
        else:
            lower = cv["accuracy"]["lower"]
            checks.append(_check("cv_accuracy_lower", lower, config.min_cv_accuracy_lower,
                                 lower >= config.min_cv_accuracy_lower, "absolute", folds=cv["folds"]))
    if champion is not None:
        for metric, limit in (("accuracy", config.max_accuracy_regression),
                              ("macro_f1", config.max_macro_f1_regression)):
            drop = champion[metric] - candidate[metric]
            checks.append(_check(f"{metric}_vs_champion", candidate[metric], champion[metric] - limit,
                                 drop <= limit, "regression", champion=champion[metric], drop=drop))
        for name, stats in candidate.get("slices", {}).items():
            theirs = champion.get("slices", {}).get(name)
            if theirs is None:
                continue
            drop = theirs["accuracy"] - stats["accuracy"]
            checks.append(_check(f"slice[{name}].accuracy_vs_champion", stats["accuracy"],
                                 theirs["accuracy"] - config.max_slice_accuracy_regression,
                                 drop <= config.max_slice_accuracy_regression, "regression",
                                 champion=theirs["accuracy"], drop=drop, rows=stats["rows"]))
    if config.require_infra_validation:
        if infra is None:
            checks.append(_check("infra_validation", 0.0, 1.0, False, "infra", detail="not run"))
        else:
            checks.append(_check("infra_validation", infra["matching_share"], 1.0, infra["passed"], "infra",
                                 detail=infra.get("detail", "")))
    failed = [c for c in checks if not c["passed"]]
    return {"blessed": not failed, "decision": "BLESSED" if not failed else "NOT_BLESSED",
            "champion_present": champion is not None, "checks": checks,
            "reasons": [c["detail"] if c["check"] == "champion_comparable" or (c["check"] == "cv_accuracy_lower"
                                                                                 and "detail" in c) else
                        f"{c['check']}: {c['value']:.4g} vs threshold {c['threshold']:.4g}" for c in failed]}


def verify_blessing(blessing: Blessing, model_name: str, candidate: str) -> None:
    """What a rollout checks before it touches traffic: the gate blessed this very candidate of this
    model (a blessing of another version, or a NOT_BLESSED one, stops it with GateFailed)."""
    if blessing.model != model_name or blessing.candidate != candidate:
        raise GateFailed(f"the blessing is for {blessing.model}@{blessing.candidate}, not "
                         f"{model_name}@{candidate}: refusing to roll out a candidate the gate did not judge")
    if not blessing.blessed:
        reasons = "; ".join(blessing.reasons) or "no reasons recorded"
        raise GateFailed(f"{model_name}@{candidate} is not blessed (decision {blessing.decision!r}, blessed "
                         f"{blessing.blessed!r}): {reasons}")


def gate_markdown(blessing: Blessing) -> str:
    lines = [f"## Gate: **{blessing.decision}** — model {blessing.model} candidate "
             f"{blessing.candidate} vs champion {blessing.champion or 'none'}", "",
             "| check | kind | value | threshold | result |", "|---|---|---:|---:|---|"]
    for c in blessing.checks:
        lines.append(f"| {c.check} | {c.kind} | {c.value:.4g} | {c.threshold:.4g} | "
                     f"{'pass' if c.passed else '**FAIL**'} |")
    if blessing.reasons:
        lines += ["", "Refused because: " + "; ".join(blessing.reasons)]
    lines += cv_markdown(blessing.cross_validation)
    lines += explanations_markdown(blessing.explanations)
    return "\n".join(lines) + "\n"


def cv_markdown(cv: dict[str, Any] | None) -> list[str]:
    """The candidate's k-fold estimate beside its test score (evaluate.cv_folds)."""
    if not cv:
        return []
    acc, f1 = cv["accuracy"], cv["macro_f1"]
    folds = ", ".join(f"{f['accuracy']:.4f}" for f in cv["per_fold"])
    return ["", f"### Cross-validation: {cv['folds']} folds of the train and validation splits "
            f"({cv['rows']} rows, {cv['epochs']} epochs each)", "",
            "| metric | mean | std | lower bound (" + f"{cv['confidence']:.0%}" + ") |", "|---|---:|---:|---:|",
            f"| accuracy | {acc['mean']:.4f} | {acc['std']:.4f} | {acc['lower']:.4f} |",
            f"| macro F1 | {f1['mean']:.4f} | {f1['std']:.4f} | {f1['lower']:.4f} |", "",
            f"Accuracy per fold: {folds}."]


def _tokens(items: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"`{t['token']}` {t[key]:+.2f}" for t in items) or "(none raises it)"


def explanations_markdown(explanations: dict[str, Any] | None) -> list[str]:
    """The candidate's explanations (components.stages.evaluate.explain): what drives each class over the
    held-out rows, and a few test documents with the tokens behind their prediction."""
    if not explanations:
        return []
    importance = explanations["importance"]
    lines = ["", f"### What the candidate relies on ({importance['method']} over {importance['documents']} "
             "test documents: class log-odds with the token minus without it)", "",
             "| class | top tokens |", "|---|---|"]
    lines += [f"| {label} | {_tokens(items, 'mean_effect')} |" for label, items in importance["per_class"].items()]
    if explanations["examples"]:
        lines += ["", "| test document | label | predicted (p) | tokens behind the prediction |", "|---|---|---|---|"]
        for e in explanations["examples"]:
            mark = "" if e["label"] == e["predicted"] else " **wrong**"
            lines.append(f"| {e['doc_id'][:12]} | {e['label']} | {e['predicted']} ({e['probability']:.3f}){mark} | "
                         f"{_tokens(e['top_tokens'], 'effect')} |")
    return lines
