"""Core modules stay free of orchestration/cluster frameworks (import-linter runs in `make lint` too;
this AST check keeps the rule enforced by the test suite itself)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from tests.support.paths import ROOT

STAGES = ROOT / "components" / "stages"
FORBIDDEN = ("kfp", "kubernetes", "kserve", "kubeflow")
# Cluster adapters: the cluster package (components/cluster/), KFP component bodies and the stage
# modules named in pyproject.toml's import contract (one list, read here) are the only ones that
# talk to cluster SDKs. The decision logic they serve (spec validation, which trial is best) lives in
# the pure modules.
CLUSTER_PACKAGE = "components/cluster/"


def _named_adapters() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (adapters,) = [c for c in contracts if c.get("source_modules") == ["components.stages"]
                   and "kfp" in c.get("forbidden_modules", [])]
    importers = {rule.split(" -> ")[0] for rule in adapters["ignore_imports"]}
    assert "components.stages.*.component" in importers
    return {name.replace(".", "/") + ".py" for name in importers if "*" not in name}


ADAPTERS = _named_adapters()


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
        relative = str(path.relative_to(ROOT))
        if path.name == "component.py" or relative in ADAPTERS or relative.startswith(CLUSTER_PACKAGE):
            continue  # thin KFP wrappers and named cluster adapters
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN or name.startswith("pipelines"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


# Every stage's shape (docs/architecture.md): config -> pure core -> executor (store I/O) -> component.
SHAPE = {
    "ingest": ("config.py", "core.py", "executor.py"),
    "report": ("config.py", "core.py", "executor.py"),
    "split": ("config.py", "core.py", "executor.py"),
    "featurize": ("config.py", "core.py", "executor.py"),
    "train": ("config.py", "core.py", "entrypoint.py"),
    "search": ("spec.py", "spec.py", "backends.py"),
    "registry": (None, "store.py", "store.py"),
    "evaluate": (None, "core.py", "executor.py"),
    "gate": ("config.py", "core.py", "executor.py"),
    "release": ("config.py", "analysis.py", "executor.py"),
    "monitor": ("config.py", "core.py", "executor.py"),
    "notify": ("config.py", "core.py", "executor.py"),
}


def test_every_stage_has_its_config_core_executor_and_a_thin_component():
    for stage, files in SHAPE.items():
        for name in files:
            assert name is None or (STAGES / stage / name).exists(), f"{stage}/{name}"
        component = (STAGES / stage / "component.py").read_text()
        assert "@dsl.component(base_image=COMPONENT_IMAGE" in component or (
            stage == "train" and "@dsl.component(base_image=TRAINING_IMAGE" in component)
        # the @documented(...) block is the form's text, not logic
        logic = re.sub(r"^@documented\(\n(?:    .*\n)+\)\n", "", component, flags=re.M)
        assert len(logic.splitlines()) < 80, f"{stage}/component.py should stay a thin wrapper"
    stages = {p.parent.name for p in STAGES.glob("*/component.py")}
    assert stages == set(SHAPE), f"stages without a described shape: {sorted(stages - set(SHAPE))}"


def test_imports_inside_functions_say_why():
    """Imports live at module level; one inside a function (outside KFP component bodies, which run
    as their own programs) carries a `# lazy: why` comment on it or just above its import block."""
    unexplained = []
    for path in sorted([*(ROOT / "components").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]):
        if path.name == "component.py":
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if not isinstance(sub, ast.Import | ast.ImportFrom):
                    continue
                first = sub.lineno - 1
                while (first > 0 and lines[first - 1].strip().startswith(("from ", "import ", ")"))) or (
                        first > 0 and lines[first - 1].startswith(" " * 8) and lines[first - 1].strip().endswith(",")):
                    first -= 1
                window = lines[max(first - 2, 0):sub.end_lineno]
                if not any("# lazy" in line for line in window):
                    unexplained.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    assert unexplained == []
