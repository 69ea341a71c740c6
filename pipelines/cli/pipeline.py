"""`conveyor compile` and `conveyor run`: the pipelines, compiled or run locally."""

from __future__ import annotations

import os
import sys

from components.common.errors import InputError
from pipelines.cli.common import output_folder, print_json


def cmd_compile(args) -> int:
    out = output_folder(args.out, "--out")
    for option, variable, value in (("--image-registry", "CONVEYOR_REGISTRY", args.image_registry),
                                    ("--image-tag", "CONVEYOR_IMAGE_TAG", args.image_tag)):
        if value is not None:
            if not value or any(c.isspace() for c in value):
                raise InputError(f"{option} {value!r}: expected a registry path like registry.example.com/ml "
                                 "(or a tag like 0.1.0), with no spaces")
            os.environ[variable] = value  # read once, when components.cluster.images loads (below)
    # lazy: the components (and their images) load only now, after the image settings are in place
    from pipelines.compile import compile_all

    _check_images(args.image_registry, args.image_tag)
    print_json(compile_all(out, k8s=args.k8s, config_path=args.config, log_format=args.log_format))
    return 0


def _check_images(registry: str | None, tag: str | None) -> None:
    """Components name their image when their module loads: a registry or tag given after that
    (in a process that had already compiled) would be silently ignored, so it is refused."""
    from components.cluster import images  # lazy: loaded by the compile step just before

    if (registry is not None and registry != images.REGISTRY) or (tag is not None and tag != images.TAG):
        raise InputError(f"--image-registry/--image-tag: this process already loaded the components with "
                         f"{images.COMPONENT_IMAGE}; run `conveyor compile` in a new process")


def cmd_run(args) -> int:
    # lazy: loading the pipelines names the components' images (what cmd_compile sets first)
    from pipelines.local_run import run_local

    summary = run_local(config_path=args.config, store=args.store, workdir=output_folder(args.workdir, "--workdir"),
                        world_size=args.world_size, strategy=args.strategy)
    if args.json:
        print_json(summary)
    else:
        sys.stdout.write(f"done in {summary['seconds']}s; summary: {summary['summary_path']}\n")
    return 0
