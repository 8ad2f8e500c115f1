"""For a tool whose `reconcile import` takes arguments of its own (`main(argv)` in
reconcilers/TOOL/importer.py, which controller/convert.py hands the command line to): the
arguments every import shares (--node/--cluster, --output-dir, --secrets-dir, as
controller/convert.py names them) and writing the result (manifests printed or written,
secrets 0600, notes on stderr)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from reconcilers.importing import Imported

SECRETS = Path("/etc/reconcile/secrets")


def placement_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="place the manifests on this node (default: this host's name)")
    where.add_argument("--cluster", help="place the manifests on every node of this Cluster")
    p.add_argument("--output-dir", type=Path, metavar="DIR", help="folder to write TOOL.yaml into (default: print it)")
    p.add_argument("--secrets-dir", type=Path, default=None,
                   help=f"where passwords found inline are written, 0600 (default: {SECRETS}/TOOL)")
    p.set_defaults(placement=None)


def resolve(args: argparse.Namespace, tool: str) -> None:
    from controller.identity import this_host

    args.placement = {"cluster": args.cluster} if args.cluster else {"node": args.node or this_host()}
    args.secrets_dir = (args.secrets_dir or SECRETS / tool).resolve()


def write_imported(tool: str, results: list[Imported], args: argparse.Namespace) -> int:
    for imported in results:
        for path, value in imported.secrets.items():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
    documents = [d for r in results for d in r.documents]
    header = f"# Imported by `reconcile import {tool}`.\n"
    body = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        target = args.output_dir / f"{tool}.yaml"
        target.write_text(header + body)
        print(f"{target}: {len(documents)} manifest(s)")
    else:
        sys.stdout.write(header + body)
    for note in (n for r in results for n in r.notes):
        print(f"note: {note}", file=sys.stderr)
    return 0
