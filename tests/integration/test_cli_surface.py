"""The CLI behaves the same everywhere: an unknown dataset or model is exit 5 with one line in text
and JSON modes alike, every read command takes --json, a bad output path is the user's input
(exit 2 naming it), and every argument has help with its default. In-process (`main(argv)`), with
an explicit --store: the same code path as the console script, without a process per case."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from pipelines.cli import build_parser, main


@pytest.fixture(scope="module")
def store(two_versions):
    shared, *_ = two_versions
    return shared.uri


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


READS = [
    ("data", "versions", "nosuch"),
    ("data", "show", "nosuch"),
    ("data", "quarantine", "nosuch"),
    ("data", "report", "nosuch"),
    ("runs", "show", "nosuch"),
    ("runs", "compare", "nosuch", "other"),
    ("models", "list", "nosuch"),
    ("models", "show", "nosuch"),
    ("models", "show", "toy-model", "nosuch-version"),
    ("data", "show", "toy", "nosuch-version"),
]


@pytest.mark.parametrize("argv", READS, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_unknown_dataset_or_model_is_exit_5_with_one_line(capsys, store, argv, as_json):
    if as_json and not any("--json" in a.option_strings for a in _subparser(argv)._actions):
        pytest.skip("no JSON mode")
    code, out, err = run(capsys, *argv, "--store", store, *(["--json"] if as_json else []))
    assert code == 5, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conveyor: error: ") and "nosuch" in lines[0]


def test_serve_of_an_unknown_model_is_exit_5(capsys, store):
    code, _out, err = run(capsys, "serve", "nosuch@champion", "--store", store, "--port", "1")
    assert code == 5 and "nosuch" in err and len(err.strip().splitlines()) == 1


def test_every_read_command_takes_json(capsys, store, two_versions):
    _, stable, *_ = two_versions
    outputs = {}
    for argv in (("data", "versions", "toy"), ("data", "show", "toy"), ("data", "quarantine", "toy"),
                 ("runs", "list"), ("runs", "show", "stable-run"), ("runs", "compare", "stable-run", "cand-run"),
                 ("models", "list", "toy-model"), ("models", "show", "toy-model", stable)):
        code, out, err = run(capsys, *argv, "--store", store, "--json")
        assert code == 0, (argv, err)
        outputs[argv[:2]] = json.loads(out)
    assert outputs[("models", "list")][0]["version"] and "production" in {
        a for m in outputs[("models", "list")] for a in m["aliases"]}
    assert outputs[("models", "show")]["version"] == stable
    assert outputs[("data", "show")]["dataset"] == "toy"
    # without --json: a table for lists, YAML for one record (the same facts)
    code, out, _ = run(capsys, "models", "show", "toy-model", stable, "--store", store)
    assert code == 0 and yaml.safe_load(out)["version"] == stable
    code, out, _ = run(capsys, "models", "list", "toy-model", "--store", store)
    assert code == 0 and out.splitlines()[0].split()[:2] == ["VERSION", "ALIASES"]


@pytest.mark.parametrize("argv, path", [
    (("data", "report", "toy", "--html", "/nonexistent/dir/r.html"), "/nonexistent/dir/r.html"),
    (("monitor", "--html", "/nonexistent/dir/m.html", "--model", "toy-model"), "/nonexistent/dir/m.html"),
    (("compile", "--out", "/proc/nope"), "/proc/nope"),
    (("run", "--workdir", "/proc/nope"), "/proc/nope"),
], ids=["data report --html", "monitor --html", "compile --out", "run --workdir"])
def test_a_bad_output_path_is_exit_2_naming_it(capsys, store, argv, path):
    extra = ("--store", store) if argv[0] != "compile" else ()
    code, _out, err = run(capsys, *argv, *extra)
    assert code == 2, err
    assert err.startswith("conveyor: error: ") and path in err and "internal error" not in err


def _subparser(argv) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in argv:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if action is None or word not in action.choices:
            break
        parser = action.choices[word]
    return parser


def _all_parsers(parser: argparse.ArgumentParser, path=("conveyor",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_every_argument_has_help_and_shows_its_default():
    from pipelines.kubectl_plugin import build_parser as plugin_parser

    missing, hidden_defaults = [], []
    for root in (build_parser(), plugin_parser()):
        for path, parser in _all_parsers(root):
            text = parser.format_help().split("\n\n", 1)[1]  # past the usage line
            for action in parser._actions:
                if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                    continue
                name = "/".join(action.option_strings) or action.dest
                if not action.help:
                    missing.append(f"{' '.join(path)} {name}")
                elif action.default not in (None, False, argparse.SUPPRESS) and action.option_strings \
                        and "default" not in text.split(f" {action.option_strings[-1]}", 1)[1].split("\n  -", 1)[0]:
                    hidden_defaults.append(f"{' '.join(path)} {name}")
    assert missing == [] and hidden_defaults == []


def test_the_store_help_names_the_real_fallback():
    text = _subparser(("models", "list")).format_help()
    flat = " ".join(text.split())
    assert "$CONVEYOR_STORE" in flat and ".conveyor/s3" in flat and ".conveyor/store" in flat
