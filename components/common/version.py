"""What code produced an artifact: package version plus the git commit when there is one."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path


@functools.cache
def code_version() -> str:
    try:
        version = metadata.version("conveyor-mlops")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    if env := os.environ.get("CONVEYOR_CODE_VERSION"):  # set in images, which carry no .git
        return env
    root = Path(__file__).resolve().parents[2]
    git = shutil.which("git")  # resolved once, run by its full path
    if git is None:
        return version
    try:
        commit = subprocess.run([git, "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run([git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{version}+g{commit}" + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return version
