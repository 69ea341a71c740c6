"""What every command group shares: reading the config, writing results, checking output paths,
and the one lazy dispatch from a parsed command to its handler."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import yaml

from components.common.errors import InputError
from components.composition.config import ConveyorConfig, load_config

# the variable's name, not a token (bandit B105)
REPOSITORY_TOKEN_ENV = "CONVEYOR_MODEL_REPOSITORY_TOKEN"  # nosec B105


class Handler:
    """A command's handler named as `group.function` (pipelines/cli/<group>.py), imported only when
    that command runs: `conveyor --help` and every other command skip the group's imports (kserve,
    kfp, pyarrow), and the group modules import at their top like any other module."""

    def __init__(self, target: str):
        self.group, _, self.function = target.partition(".")

    def __call__(self, args: argparse.Namespace) -> int:
        module = importlib.import_module(f"pipelines.cli.{self.group}")
        return getattr(module, self.function)(args)

    def __repr__(self) -> str:
        return f"Handler({self.group}.{self.function})"


def config_from_args(args) -> ConveyorConfig:
    """--config, else $CONVEYOR_CONFIG, else generic defaults (for ad-hoc sources)."""
    if getattr(args, "config", None) or os.environ.get("CONVEYOR_CONFIG"):
        return load_config(args.config)
    return ConveyorConfig()  # generic defaults for ad-hoc sources


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=None, sort_keys=False, default=str) + "\n")


def print_record(value, as_json: bool) -> None:
    """A record (a manifest, a run, a model card): YAML to read, JSON (`--json`) to parse."""
    if as_json:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
        return
    sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(value, default=str)), sort_keys=False,
                                    allow_unicode=True, width=110))


def output_file(path: str | None, option: str) -> str | None:
    """A file the user asked to be written: its folder must exist and be writable (exit 2 naming
    the path, not an internal error halfway through the work)."""
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{option} {path}: is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")
    return path


def output_folder(path: str, option: str) -> str:
    """A folder the user asked to be written (created when missing): exit 2 naming the path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create the folder ({exc.strerror})") from exc
    if not os.access(path, os.W_OK):
        raise InputError(f"{option} {path}: the folder is not writable")
    return path


def print_table(header: tuple, rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def approval_config(args) -> ConveyorConfig:
    """The environments and release settings: --config, $CONVEYOR_CONFIG, else the bundled config
    (the one `conveyor run` stages with)."""
    return load_config(getattr(args, "config", None))
