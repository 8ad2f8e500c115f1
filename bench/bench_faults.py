"""What the fault safety costs every run: reading the inventory strictly, checking the state
folder before a change (the state files read, room allocated and released), sweeping temp
files of killed runs, and the fault-injection hook when it is off.

    .venv/bin/python bench/bench_faults.py [--repeat N]

Prints milliseconds (median of N) for inventories of 100, 1,000 and 10,000 objects, in a
temporary state folder (nothing outside it is touched).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.state import Inventory, NodeLock, check_state, save_run  # noqa: E402
from reconcilers import faults  # noqa: E402
from reconcilers.base import TempJournal  # noqa: E402


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    print(f"{'objects':>8} {'read inventory':>15} {'check_state':>12} {'lock+sweep':>11} {'journal sweep':>14}")
    for n in (100, 1000, 10000):
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            inv = Inventory(state)
            for i in range(n):
                inv.record("Backend", f"b{i}", "0" * 40, "abcdef0123456789")
            inv.save()
            record = {"revision": "0" * 40, "mode": "apply", "started": "t", "seconds": 1.0, "result": "converged",
                      "counts": {"in-sync": n}, "errors": [], "objects": [{"kind": "Backend", "name": f"b{i}",
                                                                           "status": "in-sync"} for i in range(n)]}
            for _ in range(50):
                save_run(state, record)
            journal = TempJournal(state)
            for i in range(20):
                journal.note(state / f"folder{i}" / f".file{i}.*.tmp")
            read = timed(lambda: Inventory(state), args.repeat)
            check = timed(lambda: check_state(state), args.repeat)

            def lock() -> None:
                with NodeLock(state):
                    pass

            locked = timed(lock, args.repeat)
            swept = timed(lambda: (journal.note(state / ".x.*.tmp"), journal.sweep()), args.repeat)
            print(f"{n:>8} {read:>13.2f}ms {check:>10.2f}ms {locked:>9.2f}ms {swept:>12.2f}ms")
    calls = 1_000_000
    started = time.perf_counter()
    for _ in range(calls):
        faults.step("exec:haproxy -c")
    took = time.perf_counter() - started
    print(f"fault-injection hook, off: {took / calls * 1e9:.0f} ns per step")


if __name__ == "__main__":
    main()
