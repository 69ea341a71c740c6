"""What `kubectl conveyor canary|rollout status` prints: the traffic split, revisions, rollout phase
and the last analysis, from the InferenceService (and for A/B and shadow, its release route)."""

from __future__ import annotations

from typing import Any

from components.stages.release.kserve_state import CANDIDATE, STABLE, mode_of, preview_url, read_state
from components.stages.release.route import candidate_isvc, declared_split, route_state


def status_report(obj: dict[str, Any], route: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `kubectl conveyor canary status` shows: traffic split, revisions, last analysis;
    for an A/B or shadow release, the split its HTTPRoute declares (`route`)."""
    ann = obj["metadata"].get("annotations", {})
    state = read_state(obj)
    status = obj.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    mode = mode_of(obj)
    name = obj["metadata"]["name"]
    if route is not None:
        split = declared_split(route, name)
        routed = route_state(route)
        traffic = [{"revision": f"{name} (stable {routed.get('stable')})", "percent": round(split["stable"] * 100)}]
        if routed.get("candidate"):
            traffic.append({"revision": f"{candidate_isvc(name)} (candidate {routed['candidate']})",
                            "percent": round(split["candidate"] * 100)})
        if split["mirrored"]:
            traffic.append({"revision": f"{candidate_isvc(name)} (mirrored copies, answers discarded)",
                            "percent": round(split["mirrored"] * 100)})
    elif mode == "knative":
        traffic = [{"revision": t.get("revisionName"), "percent": t.get("percent"), "tag": t.get("tag"),
                    "latest": t.get("latestRevision")} for t in predictor.get("traffic") or []]
    else:
        canary = obj["spec"].get("canary") or []
        share = sum(c.get("trafficPercent", 0) for c in canary)
        traffic = [{"revision": "predictor (stable)", "percent": 100 - share}] + [
            {"revision": f"canary[{i}]", "percent": c.get("trafficPercent", 0)} for i, c in enumerate(canary)]
    ready = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return {
        "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "mode": mode,
        "stable": ann.get(STABLE), "candidate": ann.get(CANDIDATE),
        "phase": str(state.phase) if state else None, "weight": state.weight if state else None,
        "strategy": state.strategy if state else None, "stage": (state.stage or None) if state else None,
        "preview_url": preview_url(obj),
        "route": route["metadata"]["name"] if route is not None else None,
        "hostnames": (route.get("spec") or {}).get("hostnames") if route is not None else None,
        "failed_checks": state.failed if state else None, "traffic": traffic,
        "revisions": {k: predictor.get(k) for k in ("latestCreatedRevision", "latestReadyRevision",
                                                     "latestRolledoutRevision", "previousRolledoutRevision")
                      if predictor.get(k)},
        "conditions": ready,
        "last_analysis": state.history[-1] if state and state.history else None,
        "history": state.history if state else [],
    }


def format_status(report: dict[str, Any], wide: bool = False) -> str:
    """kubectl-style text: the last analysis with its checks; `wide`: every interval the object
    keeps (the last HISTORY_KEPT; the Events have them all), each with its checks."""
    lines = [f"InferenceService {report['namespace']}/{report['name']} ({report['mode']} mode)",
             f"  stable {report['stable']}  candidate {report['candidate'] or '-'}",
             f"  {report.get('strategy') or 'canary'}: {report['phase'] or 'none'}  weight {report['weight']}%  "
             f"failed checks {report['failed_checks']}" + (f"  stage {report['stage']}" if report.get("stage") else ""),
             "  traffic:"]
    lines += [f"    {t['percent']:>3}%  {t['revision']}" + (f"  (tag {t['tag']})" if t.get("tag") else "")
              for t in report["traffic"]] or ["    (no traffic status yet)"]
    if report.get("preview_url"):
        lines.append(f"  preview: {report['preview_url']}")
    if report.get("route"):
        lines.append(f"  route: HTTPRoute {report['route']} ({', '.join(report.get('hostnames') or [])})")
    if report["revisions"]:
        lines.append("  revisions: " + ", ".join(f"{k}={v}" for k, v in report["revisions"].items()))
    if report["conditions"]:
        lines.append("  conditions: " + ", ".join(f"{k}={v}" for k, v in report["conditions"].items()))
    last = [report["last_analysis"]] if report["last_analysis"] else []
    intervals = (report.get("history") or []) if wide else last
    for i, entry in enumerate(intervals):
        back = len(intervals) - 1 - i
        title = "last analysis" if back == 0 else f"{back} interval{'s' if back > 1 else ''} before"
        lines.append(f"  {title} {entry.get('at')}: {entry['action']} at {entry['weight']}%"
                     + (f" [{entry['stage']}]" if wide and entry.get("stage") else "")
                     + (" (by user)" if entry.get("by") else ""))
        for c in entry["checks"]:
            verdict = {True: "ok", False: "FAILED", None: "no data"}[c["passed"]]
            value = "-" if c["value"] is None else f"{c['value']:.4g}"
            lines.append(f"    {c['name']:<34} {value:>10}  limit {c['threshold']:<8g} {verdict}"
                         + (f"  ({c['detail']})" if c.get("detail") else ""))
    return "\n".join(lines)
