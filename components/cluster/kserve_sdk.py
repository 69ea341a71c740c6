"""Import kserve without handing it our command line.

`kserve.model_server` parses `sys.argv` when it is first imported (`parser.parse_known_args()` at
module level). argparse accepts abbreviations, so a Conveyor option such as `conveyor compile
--config FILE` is read as kserve's `--configure_logging FILE` and the process exits 2 halfway
through. Every import of kserve in this project goes through `load()` first; later `import kserve`
statements then find the already-imported module and parse nothing.
"""

from __future__ import annotations

import sys
from types import ModuleType


def load() -> ModuleType:
    if "kserve" in sys.modules:
        return sys.modules["kserve"]
    saved = sys.argv
    sys.argv = saved[:1]  # kserve's options keep their defaults; ours are parsed by our own CLI
    try:
        # lazy: kserve loads in seconds; only serving needs it
        import kserve
    finally:
        sys.argv = saved
    return kserve
