"""Command line: `reconcile --dry-run | apply | validate | schema | lab | agent | status`."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from controller.lab.cli import main as lab_main

        return lab_main(argv[1:])
    print("reconcile: core CLI not built yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
