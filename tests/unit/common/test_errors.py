"""The one error vocabulary: every class lives in components/common/errors.py, and its exit code
(every entry point, through run_main) and its HTTP status (the predictor's error table) are the
ones this table promises."""

from __future__ import annotations

import ast
import inspect

import pytest

from components.common import errors
from tests.support.paths import ROOT

CONTRACT = {  # class: (exit code, HTTP status)
    "ConveyorError": (1, 500), "InputError": (2, 400), "ConfigError": (3, 500), "SpecError": (3, 500),
    "AdmissionError": (3, 500), "StoreError": (4, 503), "NotFoundError": (5, 404), "IntegrityError": (6, 500),
    "GateFailed": (7, 500), "SearchFailed": (8, 500), "ClusterError": (9, 503), "ReleaseRefused": (10, 409),
}
CLASSES = {name: cls for name, cls in inspect.getmembers(errors, inspect.isclass)
           if issubclass(cls, errors.ConveyorError)}


def test_the_contract_names_every_error_class():
    assert set(CLASSES) == set(CONTRACT)


def test_no_error_class_is_defined_outside_errors_py():
    elsewhere = []
    for path in [*ROOT.glob("components/**/*.py"), *ROOT.glob("pipelines/**/*.py")]:
        if path == ROOT / "components/common/errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")) in CONTRACT
                                                      for b in node.bases):
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not elsewhere, elsewhere


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_every_entry_point_exits_with_the_class_code(name, capsys):
    from components.common.entry import run_main

    def fail() -> int:
        raise CLASSES[name](f"{name} happened: row 3, field 'text'")

    for prog in ("conveyor", "kubectl conveyor", "train"):
        assert run_main(prog, fail) == CONTRACT[name][0]
        assert capsys.readouterr().err == f"{prog}: error: {name} happened: row 3, field 'text'\n"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_the_predictor_answers_with_the_class_status(name):
    import asyncio
    import json
    from types import SimpleNamespace

    from components.stages.serve.server import error_response

    request = SimpleNamespace(method="POST", url=SimpleNamespace(path="/v2/models/m/infer"))
    response = asyncio.run(error_response(request, CLASSES[name](f"{name} happened")))
    assert response.status_code == CONTRACT[name][1]
    assert json.loads(response.body) == {"error": f"{name} happened"}


def test_a_bug_is_one_line_and_70(capsys, monkeypatch):
    from components.common.entry import run_main

    monkeypatch.delenv("CONVEYOR_DEBUG", raising=False)
    assert run_main("conveyor", lambda: 1 // 0) == 70
    err = capsys.readouterr().err
    assert err.startswith("conveyor: internal error: ZeroDivisionError") and "Traceback" not in err


def test_an_uncaught_error_in_a_task_process_ends_with_its_line_and_code(tmp_path):
    """What a KFP task does when its component body raises: one structured line, the class's exit
    code, no traceback; the local runner reads the class and message back from the task log."""
    import subprocess
    import sys

    from pipelines.local_run import _failure_from_log

    body = "import components.stages.split.core\nfrom components.common.errors import SearchFailed\n" \
           "raise SearchFailed('search stopped: 3 trials failed (limit 2)')\n"
    out = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 8 and "Traceback" not in out.stderr, out.stderr
    log = tmp_path / "tasks.log"
    log.write_text("some task output\n" + out.stderr)
    error = _failure_from_log(log, "training pipeline")
    assert type(error) is errors.SearchFailed and error.exit_code == 8
    assert error.message == "training pipeline: search stopped: 3 trials failed (limit 2)"
