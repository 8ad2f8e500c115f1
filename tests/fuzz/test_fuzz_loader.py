"""Fuzzing the loader: 1,000 seeded mutations of valid trees per run (tests/fuzz/mutate.py).

For every tree: `reconcile`'s loader accepts it or refuses it with problems that are each
one line naming a file and a line of the tree; no traceback, no exception the loader did not
expect, nothing read outside the tree, and memory bounded (the trees load in a worker
process under an address-space limit; its peak is checked). A sample goes through the CLI
(`validate --no-native` and `--dry-run`), which must leave HOME, TMPDIR and the state folder
as they were and run only read-only commands.

The seeds are fixed so that CI is reproducible: RECONCILE_FUZZ_SEED (first seed, default 0)
and RECONCILE_FUZZ_TREES (default 1000) explore further, e.g.
    RECONCILE_FUZZ_SEED=$RANDOM RECONCILE_FUZZ_TREES=50000 .venv/bin/python -m pytest tests/fuzz
A failing seed is printed with its mutations; `make_tree(seed, …)` writes that tree again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.mutate import SECRET, make_outside, make_tree
from tests.readonly_allowlist import allowed

ROOT = Path(__file__).resolve().parents[2]
FIRST = int(os.environ.get("RECONCILE_FUZZ_SEED", "0"))
TREES = int(os.environ.get("RECONCILE_FUZZ_TREES", "1000"))
PEAK_RSS_MB = 400  # the worker's peak: about 70 MB today; an expansion without bound is GBs
PROBLEM_LINE = re.compile(r"^  (\S.*?:[1-9][0-9]*|\S.*/): ")  # "  file:line: …", a folder: "  folder/: …"


def run_worker(first: int, count: int, work: Path) -> tuple[list[dict], dict]:
    """Run the worker over [first, first + count); a worker that dies (a crash, a signal)
    is a failure of the seed it was on, and the run goes on from the next seed."""
    failures: list[dict] = []
    summaries: list[dict] = []
    seed = first
    while seed < first + count:
        out = subprocess.run([sys.executable, "-m", "tests.fuzz.worker", str(seed), str(first + count - seed), str(work)],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
        if out.returncode == 0:
            summaries.append(json.loads(out.stdout.splitlines()[-1]))
            break
        last = [int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("seed ")]
        crashed = last[-1] if last else seed
        failures.append({"seed": crashed, "mutations": "?", "wrong": [f"the worker died (exit {out.returncode}): "
                                                                      f"{out.stderr[-500:]}"]})
        seed = crashed + 1
        if len(failures) > 20:
            break
    summary = {"trees": 0, "valid": 0, "refused": 0, "crashed": 0, "peak_rss_mb": 0.0, "valid_seeds": [],
               "refused_seeds": [], "slowest_seconds": 0.0, "slowest_seed": -1}
    for s in summaries:
        failures += s["failures"]
        for key in ("valid", "refused", "crashed", "trees"):
            summary[key] += s[key]
        summary["peak_rss_mb"] = max(summary["peak_rss_mb"], s["peak_rss_mb"])
        summary["valid_seeds"] += s["valid_seeds"]
        summary["refused_seeds"] += s["refused_seeds"]
        if s["slowest_seconds"] > summary["slowest_seconds"]:
            summary["slowest_seconds"], summary["slowest_seed"] = s["slowest_seconds"], s["slowest_seed"]
    return failures, summary


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("fuzz")
    failures, summary = run_worker(FIRST, TREES, work)
    return {"failures": failures, **summary}


def test_every_fuzzed_tree_is_loaded_or_refused_with_a_file_and_line_per_problem(fuzzed):
    report = "\n".join(f"seed {f['seed']} ({', '.join(f['mutations'])}): " + "; ".join(f["wrong"])
                       for f in fuzzed["failures"])
    assert not fuzzed["failures"], f"{len(fuzzed['failures'])} fuzzed trees went wrong:\n{report}"
    print(f"fuzz: seeds {FIRST}..{FIRST + TREES - 1}: {fuzzed['valid']} valid, {fuzzed['refused']} refused; "
          f"slowest {fuzzed['slowest_seconds']} s (seed {fuzzed['slowest_seed']}); peak {fuzzed['peak_rss_mb']:.0f} MB")


def test_the_fuzzed_trees_are_many_and_both_valid_and_refused(fuzzed):
    # A fuzzer whose trees are all refused by the YAML parser tests little of the rest.
    assert fuzzed["trees"] == TREES and (TREES >= 1000 or "RECONCILE_FUZZ_TREES" in os.environ)
    assert fuzzed["valid"] >= TREES // 10 and fuzzed["refused"] >= TREES // 2


def test_memory_stays_bounded_over_every_fuzzed_tree(fuzzed):
    assert 0 < fuzzed["peak_rss_mb"] < PEAK_RSS_MB, fuzzed["peak_rss_mb"]


def _state(*folders: Path) -> dict[str, tuple]:
    """Every path below the folders with its type, size and modification time."""
    out: dict[str, tuple] = {}
    for folder in folders:
        out[str(folder)] = ("exists", folder.exists())
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            info = path.lstat()
            out[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return out


def _run_cli(args: list[str], home: Path, tmp: Path, record: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(home), "TMPDIR": str(tmp),
           "LANG": "C.UTF-8"}
    if record is not None:
        env["RECONCILE_RECORD"] = str(record)
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_sample_through_the_cli_exits_cleanly_and_leaves_nothing_behind(fuzzed, tmp_path):
    sample = fuzzed["valid_seeds"][1:3] + fuzzed["refused_seeds"][:3]
    assert len(sample) == 5
    outside = tmp_path / "outside"
    make_outside(outside)
    home, tmp, state = tmp_path / "home", tmp_path / "tmp", tmp_path / "state"
    home.mkdir()
    tmp.mkdir()
    # LXC takes a lock folder under /run/lxc/lock/<its path> even to read a container: the
    # native check's temporary LXC path is below TMPDIR, and must not leave one behind.
    lxc_locks = Path("/run/lxc/lock") / str(tmp).lstrip("/")
    try:
        for i, seed in enumerate(sample):
            repo = tmp_path / f"tree-{seed}"
            make_tree(seed, repo, outside)
            before = _state(repo, home, tmp, state, lxc_locks)
            valid = seed in fuzzed["valid_seeds"]
            out = _run_cli(["validate", "--no-native", "--repo", str(repo)], home, tmp)
            assert out.returncode == (0 if valid else 1), f"seed {seed}: {out.stdout}{out.stderr}"
            assert "Traceback" not in out.stdout + out.stderr and SECRET not in out.stderr
            if not valid:
                problems = out.stderr.splitlines()[1:]
                assert problems and all(PROBLEM_LINE.match(line) for line in problems), out.stderr
            if i < 3:  # a dry-run costs a second or two: two valid trees and a refused one
                record = tmp_path / f"record-{seed}.json"
                out = _run_cli(["--dry-run", "--repo", str(repo), "--node", "lb1", "--state-dir", str(state)],
                               home, tmp, record)
                # a valid tree may still fail a native check on this machine (keepalived -t
                # on an interface it does not have): exit 1 with that reason, no traceback
                assert out.returncode in ((0, 1, 2) if valid else (1,)), f"seed {seed}: {out.stdout}{out.stderr}"
                assert "Traceback" not in out.stdout + out.stderr
                if valid:
                    records = json.loads(record.read_text())
                    refused = [r["argv"] for r in records if not allowed(r["what"], r["argv"])]
                    assert records and not refused, f"seed {seed}: a dry-run ran {refused}"
                    record.unlink()
            assert _state(repo, home, tmp, state, lxc_locks) == before, f"seed {seed}: the CLI left something behind"
    finally:
        shutil.rmtree(lxc_locks, ignore_errors=True)  # if it failed: not on this machine either
