"""`kubectl conveyor` (installed as `kubectl-conveyor`): canary commands for Conveyor's
InferenceServices. Only help exists so far; the verbs arrive with the deployment stage."""

from __future__ import annotations

import argparse
import sys

VERBS = ("status", "promote", "rollback", "pause", "resume", "analyze")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl conveyor", description="Conveyor canary commands "
                                     "for KServe InferenceServices (uses your current kubeconfig context).")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    canary = sub.add_parser("canary", help=f"canary rollout: {', '.join(VERBS)} (not yet implemented)")
    canary.add_argument("verb", choices=VERBS, nargs="?")
    canary.add_argument("name", nargs="?")
    canary.add_argument("-n", "--namespace")
    args = parser.parse_args(argv)
    if args.group is None or args.verb is None:
        parser.print_help()
        return 0
    sys.stderr.write(f"kubectl conveyor: canary {args.verb} is not implemented yet (deployment stage)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
