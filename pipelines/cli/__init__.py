"""The `conveyor` command line.

Every command prints results on stdout (JSON where a program will read it) and any failure as one
line on stderr, `conveyor: error: ...`, with an exit code per error class (see
components.common.errors). Set CONVEYOR_DEBUG=1 to see tracebacks.

One module per command group (data, runs, audit, releases, report, models, serve, monitor,
pipeline), each importing what its commands run; parser.py builds the parser and names each
command's handler, which loads only when that command runs (common.Handler).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from components.common.entry import run_main
from pipelines.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def with_loop_store(args: argparse.Namespace, func: Callable[[argparse.Namespace], int]) -> int:
    """A command that reads or writes the store, given none (no --store, no $CONVEYOR_STORE), in a
    folder where `conveyor run` kept its store (.conveyor/s3): it uses that store, through the
    loop's running server or one started for the command and stopped after it."""
    # lazy: only commands in a folder with a loop's store need it
    from pipelines.s3server import LoopStore, loop_data_dir

    data_dir = None
    serves_a_folder = args.command == "serve" and os.path.isdir(args.model)  # KServe's /mnt/models: no store
    if "store" in vars(args) and args.command != "run" and not serves_a_folder and not args.store \
            and not os.environ.get("CONVEYOR_STORE"):
        data_dir = loop_data_dir()
    if data_dir is None:
        return func(args)
    with LoopStore(data_dir):
        return func(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return run_main("conveyor", lambda: with_loop_store(args, func))

