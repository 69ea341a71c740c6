"""Core modules stay free of orchestration/cluster frameworks (import-linter runs in `make lint` too;
this AST check keeps the rule enforced by the test suite itself)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("kfp", "kubernetes", "kserve", "kubeflow")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_never_import_frameworks():
    offenders = []
    for path in sorted((ROOT / "components").rglob("*.py")):
        if path.name == "component.py":
            continue  # the thin KFP wrappers are the only place kfp belongs
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN or name.startswith("pipelines"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_every_stage_has_a_thin_component_over_a_pure_core():
    for stage in ("ingest", "report", "split", "featurize"):
        assert (ROOT / "components" / stage / "core.py").exists()
        component = (ROOT / "components" / stage / "component.py").read_text()
        assert "@dsl.component(base_image=COMPONENT_IMAGE" in component
        assert len(component.splitlines()) < 60, f"{stage}/component.py should stay a thin wrapper"
