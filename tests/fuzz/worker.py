"""Load a range of fuzzed trees in this process and report what was wrong, as JSON.

    python -m tests.fuzz.worker FIRST_SEED COUNT WORKDIR

Runs under an address-space limit (RLIMIT_AS, `ADDRESS_SPACE`) so that a tree that expands
without bound fails here with a MemoryError instead of taking the machine. For every seed:
`load_tree` either accepts the tree or raises TreeError, and then every problem is one
printable line naming a file of the tree (escaped) and a line inside it, never the content
of a file outside the tree, never one of the loader's last-resort messages (those mean an
exception the loader did not expect). Before each tree the seed is written to stderr, so a
crash (a segmentation fault) still names its seed. The last line of stdout is a summary.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path

from controller.loader import TreeError, load_tree
from controller.tree_files import escape
from tests.fuzz.mutate import SECRET, make_outside, make_tree

ADDRESS_SPACE = 3 << 30  # bytes: the interpreter, pydantic and the largest tree the limits let through
LAST_RESORT = ("cannot read this YAML", "cannot validate this document")


def shown_names(root: Path) -> dict[str, int]:
    """The name the loader shows for each file, link and folder below `root` → its lines."""
    out: dict[str, int] = {}
    broot = os.fsencode(root)
    for folder, dirs, files in os.walk(broot):
        for name in dirs + files:
            path = os.path.join(folder, name)
            shown = escape(os.fsdecode(os.path.relpath(path, broot)))
            lines = 0
            inside = os.path.realpath(path).startswith(os.path.realpath(broot) + b"/")
            if inside and os.path.isfile(path) and os.path.getsize(path) <= 16 << 20:
                with open(path, "rb") as f:
                    lines = len(f.read().decode("utf-8", "replace").splitlines()) + 1
            out[shown] = lines
            out[shown + "/"] = 0
    return out


def check(seed: int, root: Path) -> tuple[str, list[str]]:
    """("valid" | "refused", what is wrong with the loader's answer)."""
    try:
        load_tree(root)
        return "valid", []
    except TreeError as err:
        problems = err.problems
    except BaseException as err:  # noqa: BLE001 - any other exception is the finding
        return "crashed", [f"{type(err).__name__}: {err}\n{traceback.format_exc()}"]
    wrong = []
    names = shown_names(root)
    for p in problems:
        text = str(p)
        if "\n" in text or not text.isprintable():
            wrong.append(f"not one printable line: {text!r}")
        if SECRET in text:
            wrong.append(f"content from outside the tree: {text!r}")
        if any(words in p.message for words in LAST_RESORT):
            wrong.append(f"an exception the loader did not expect: {text!r}")
        if p.file == str(root):
            continue  # the tree as a whole (the file count)
        if p.file not in names:
            wrong.append(f"names no file of the tree: {text!r}")
        elif not p.file.endswith("/") and not 1 <= p.line <= max(names[p.file], 1):
            wrong.append(f"line {p.line} is not a line of {p.file} ({names[p.file]} lines): {text!r}")
    return "refused", wrong


def main() -> None:
    first, count, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, resource.getrlimit(resource.RLIMIT_AS)[1]))
    outside = work / "outside"
    make_outside(outside)
    counts = {"valid": 0, "refused": 0, "crashed": 0}
    failures, valid_seeds, refused_seeds = [], [], []
    slowest = (0.0, -1)
    for seed in range(first, first + count):
        print(f"seed {seed}", file=sys.stderr, flush=True)
        root = work / "tree"
        if root.exists():
            shutil.rmtree(root)
        ops = make_tree(seed, root, outside)
        t0 = time.perf_counter()
        outcome, wrong = check(seed, root)
        slowest = max(slowest, (time.perf_counter() - t0, seed))
        counts[outcome] += 1
        (valid_seeds if outcome == "valid" else refused_seeds).append(seed)
        if wrong:
            failures.append({"seed": seed, "mutations": ops, "wrong": wrong[:5]})
    shutil.rmtree(work / "tree", ignore_errors=True)
    print(json.dumps({"trees": count, **counts, "failures": failures, "valid_seeds": valid_seeds[:20],
                      "refused_seeds": refused_seeds[:20], "slowest_seconds": round(slowest[0], 3),
                      "slowest_seed": slowest[1],
                      "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM; ru_maxrss would count the parent it was forked from)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


if __name__ == "__main__":
    main()
