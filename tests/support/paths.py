"""Where the repository's folders are, for tests at any depth under tests/."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "conveyor"
UPSTREAM_CRDS = ROOT / "tests" / "upstream_crds"
