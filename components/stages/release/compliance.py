"""The compliance report of one model version (`conveyor models report NAME VERSION`): everything an
auditor asks about it, from the records the steps wrote and the audit log, in Markdown and HTML.

  lineage       dataset version (manifest: rows, parent, quarantine) -> training run (parameters,
                metrics, code, image, device) -> model version (sha256 of each file)
  gate          the gate's decision and reasons
  environments  each pre-production verdict (checks of the last interval), approval requests and
                decisions with who (as recorded: OS user, ServiceAccount, or the person the API
                server authenticated), when and why
  releases      every release of the version (strategy, outcome, steps) and the aliases it held
  explanations  the global token importance the evaluate step attached
  integrity     whether the audit log's hash chain verifies, and how many entries are about it

`gather` reads; `markdown` and `html` render (pure). No raw text of any request or row is in it.
"""

from __future__ import annotations

import html as html_lib
from typing import Any

from components.common import audit
from components.common.errors import ConveyorError, NotFoundError
from components.common.layout import model_card_key
from components.common.storage import Store


def gather(store: Store, model: str, version: str, environments: list[str]) -> dict[str, Any]:
    # lazy: each reader is needed only here
    from components.dataset.versioning import read_manifest
    from components.stages.registry.store import aliases, read_explanations
    from components.stages.release import environments as envs_
    from components.tracking.runs import read_run

    if not store.exists(model_card_key(model, version)):
        raise NotFoundError(f"model {model!r} has no version {version!r} in {store.uri}")
    card = store.read_json(model_card_key(model, version))
    dataset = card.get("dataset") or {}
    try:
        manifest = read_manifest(store, dataset["name"], dataset["version"])
    except (NotFoundError, KeyError):
        manifest = None
    try:
        run = read_run(store, card["run_id"])
    except (NotFoundError, KeyError):
        run = None
    entries = audit.read_entries(store)
    try:
        chain = {"intact": True, "entries": audit.verify(store)}
    except ConveyorError as exc:
        chain = {"intact": False, "problem": str(exc)}
    about = [e for e in entries if e["subject"].get("model") == model and e["subject"].get("version") == version]
    about += [e for e in entries if e["event"] == "dataset_version_committed"
              and e["subject"].get("dataset") == dataset.get("name")
              and e["subject"].get("version") == dataset.get("version")]
    about.sort(key=lambda e: e["seq"])
    per_env = {env: {"verification": envs_.verification(store, model, version, env),
                     "request": envs_.request(store, model, version, env),
                     "decision": envs_.decision(store, model, version, env)} for env in environments}
    return {"model": model, "version": version, "card": card, "manifest": manifest, "run": run,
            "gate": [e for e in about if e["event"] == "gate_decision"],
            "environments": per_env, "releases": [e for e in about if e["event"].startswith(("release_", "rollout_"))],
            "aliases": sorted(a for a, v in aliases(store, model).items() if v == version),
            "explanations": read_explanations(store, model, version), "chain": chain, "entries": about}


def _who(actor: dict[str, Any] | None) -> str:
    if not actor:
        return "-"
    name = actor.get("name") or actor.get("policy") or "?"
    extra = [f"{k} {actor[k]}" for k in ("policy", "run_id", "service_account", "authenticated_by", "via")
             if actor.get(k) and actor.get(k) != name]
    return name + (f" ({', '.join(extra)})" if extra else "")


def _sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]] | None]]:
    """(title, paragraphs, table rows with the header first) for both renderings."""
    card, manifest, run = r["card"], r["manifest"], r["run"]
    dataset = card.get("dataset") or {}
    test = (card.get("metrics") or {}).get("test") or {}
    out: list[tuple[str, list[str], list[list[str]] | None]] = []
    rows = [["step", "what", "record"],
            ["data", f"{dataset.get('name')}@{dataset.get('version')}"
             + (f": {manifest['rows']['total']} rows, {manifest['rows']['quarantined']} quarantined, parent "
                f"{manifest.get('parent') or 'none'}, created {manifest.get('created_at')}" if manifest else
                " (manifest not found)"), f"datasets/{dataset.get('name')}/{dataset.get('version')}/manifest.json"],
            ["training run", f"{card.get('run_id')}" + (f" on {run.get('device')}, {run.get('duration_s')} s, "
                                                        f"code {run.get('code_version')}" if run else ""),
             f"runs/{card.get('run_id')}.json"],
            ["model", f"{r['model']} {r['version']}, test accuracy {test.get('accuracy')}, macro-F1 "
                      f"{test.get('macro_f1')}; aliases now: {', '.join(r['aliases']) or 'none'}",
             model_card_key(r["model"], r["version"])]]
    rows += [["file", name, f"sha256 {digest}"] for name, digest in sorted((card.get("files") or {}).items())]
    out.append(("Lineage", [f"Registered {card.get('created_at')}; image {card.get('image') or 'local'}."], rows))
    gate_rows = [["time", "decision", "reasons", "actor"]] + [
        [e["time"], str(e["details"].get("decision")), "; ".join(e["details"].get("reasons") or []) or "-",
         _who(e["actor"])] for e in r["gate"]]
    out.append(("Gate", [] if r["gate"] else ["No gate decision is recorded for this version."], gate_rows))
    env_rows = [["environment", "record", "when", "outcome", "who", "why"]]
    for env, recs in r["environments"].items():
        if recs["verification"]:
            v = recs["verification"]
            failing = [c["name"] for c in v.get("checks") or [] if c.get("passed") is not True]
            env_rows.append([env, "verification", v.get("at", "-"), "passed" if v.get("passed") else "FAILED",
                             f"vs production {v.get('stable') or 'none'}",
                             v.get("reason", "-") + (f"; failing: {', '.join(failing)}" if failing else "")])
        if recs["request"]:
            q = recs["request"]
            env_rows.append([env, "approval requested", q["requested_at"], f"expires {q['expires_at']}", "-",
                             f"after {q.get('checked', {}).get('env')} {q.get('checked', {}).get('outcome')}"])
        if recs["decision"]:
            d = recs["decision"]
            env_rows.append([env, "decision", d["at"], d["decision"], _who(d.get("by")), d.get("reason", "-")])
    out.append(("Environments and approvals", [], env_rows if len(env_rows) > 1 else None))
    rel_rows = [["time", "event", "environment", "strategy", "outcome", "actor"]] + [
        [e["time"], e["event"], e["subject"].get("env", "-"), str(e["subject"].get("strategy", "-")),
         str(e["details"].get("outcome", "-")), _who(e["actor"])] for e in r["releases"]]
    out.append(("Release history", [] if r["releases"] else ["This version was never released."],
                rel_rows if r["releases"] else None))
    explanations = r["explanations"] or {}
    ex_rows = [["class", "tokens that raise it most (mean occlusion effect, log-odds)"]] + [
        [label, ", ".join(f"{t['token']} {t['mean_effect']:+.3f}" for t in tokens[:10]) or "-"]
        for label, tokens in (explanations.get("per_class") or {}).items()]
    out.append(("Explanations", [f"{explanations.get('method')} over {explanations.get('documents')} held-out "
                                 "documents." if explanations else "No explanations are attached."],
                ex_rows if explanations else None))
    chain = r["chain"]
    out.append(("Audit log", [f"Hash chain {'intact' if chain['intact'] else 'BROKEN'}"
                              + (f" ({chain['entries']} entries)" if chain["intact"] else f": {chain['problem']}")
                              + f"; {len(r['entries'])} entries are about this version or its data."], None))
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Compliance report: {r['model']} {r['version']}", ""]
    for title, paragraphs, rows in _sections(r):
        lines += [f"## {title}", ""] + [p + "\n" for p in paragraphs]
        if rows:
            esc = [[c.replace("|", "\\|") for c in row] for row in rows]
            lines += ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
            lines += ["| " + " | ".join(row) + " |" for row in esc[1:]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def html(r: dict[str, Any]) -> str:
    e = html_lib.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Compliance report: {e(r['model'])} "
             f"{e(r['version'])}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}</style>"
             f"</head><body><h1>Compliance report: {e(r['model'])} {e(r['version'])}</h1>"]
    for title, paragraphs, rows in _sections(r):
        parts.append(f"<h2>{e(title)}</h2>" + "".join(f"<p>{e(p)}</p>" for p in paragraphs))
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
                         + "</table>")
    return "".join(parts) + "</body></html>\n"
