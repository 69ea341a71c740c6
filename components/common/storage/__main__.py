"""`python -m components.common.storage check URI` (the chart's `helm test` hook)."""

import sys

from components.common.entry import run_main
from components.common.storage import main

sys.exit(run_main("store", lambda: main(sys.argv[1:])))
