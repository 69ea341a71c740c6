"""`conveyor models`: the model registry."""

from __future__ import annotations

import os

from components.common.errors import NotFoundError
from components.common.storage import open_store
from components.stages.registry.store import (
    aliases,
    list_versions,
    load,
    read_cross_validation,
    read_explanations,
    resolve_version,
)
from components.stages.release import compliance
from pipelines.cli.common import approval_config, output_folder, print_json, print_record, print_table


def cmd_models_list(args) -> int:
    store = open_store(args.store)
    versions = list_versions(store, args.name)
    if not versions:
        raise NotFoundError(f"model {args.name!r} has no versions in the registry at {store.uri}")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(store, args.name).items():
        by_version.setdefault(version, []).append(alias)
    if args.json:
        print_json([{"version": c["version"], "aliases": sorted(by_version.get(c["version"], [])),
                      "created_at": c["created_at"], "run_id": c["run_id"],
                      "test_accuracy": c["metrics"]["test"].get("accuracy"),
                      "dataset": f"{c['dataset']['name']}@{c['dataset']['version']}"} for c in versions])
        return 0
    rows = [(c["version"], ",".join(sorted(by_version.get(c["version"], []))) or "-", c["created_at"], c["run_id"],
             f"{c['metrics']['test'].get('accuracy', float('nan')):.4f}",
             f"{c['dataset']['name']}@{c['dataset']['version']}") for c in versions]
    print_table(("VERSION", "ALIASES", "CREATED", "RUN", "TEST_ACC", "DATASET"), rows)
    return 0


def cmd_models_show(args) -> int:
    store = open_store(args.store)
    loaded = load(store, args.name, args.ref)  # verifies every file's sha256
    card = dict(loaded.card)
    if (explanations := read_explanations(store, args.name, card["version"])) is not None:
        card["explanations"] = explanations  # global token importance, from the evaluate step
    if (estimate := read_cross_validation(store, args.name, card["version"])) is not None:
        card["cross_validation"] = estimate  # k-fold estimate, from the evaluate step (evaluate.cv_folds)
    print_record(card, args.json)
    return 0


def cmd_models_report(args) -> int:
    cfg = approval_config(args)
    store = open_store(args.store)
    version = resolve_version(store, args.name, args.ref)
    report = compliance.gather(store, args.name, version, [e.name for e in cfg.environments])
    folder = output_folder(args.out, "--out")
    written = {}
    for suffix, render in (("md", compliance.markdown), ("html", compliance.html)):
        path = os.path.join(folder, f"{args.name}-{version}-compliance.{suffix}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(render(report))
        written[suffix] = path
    if args.json:
        print_json({"model": args.name, "version": version, **written, "chain_intact": report["chain"]["intact"]})
    else:
        print(f"compliance report of {args.name} {version}: {written['md']} and {written['html']} (audit log "
              f"{'intact' if report['chain']['intact'] else 'BROKEN'}; {len(report['entries'])} entries about it)")
    return 0 if report["chain"]["intact"] else 6
