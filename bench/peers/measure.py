"""Run one command and measure it: wall time and the peak RSS of its process tree.

    python3 measure.py LOGPREFIX -- ARGV...

Prints one JSON object: {"rc", "seconds", "peak_rss_mb", "max_single_rss_mb"}. The command's
output goes to LOGPREFIX.out / LOGPREFIX.err. The tree is the command and every process
whose parent chain leads to it, sampled every 10 ms from /proc (a daemon the command
starts leaves the tree when it detaches). Used inside a lab node by bench_peers.py, so
that reconcile, ansible-playbook and pyinfra are measured the same way.
"""
import json
import os
import resource
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and its descendants now."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        todo += children.get(pid, [])
    return total


def main() -> int:
    prefix, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    with open(prefix + ".out", "wb") as out, open(prefix + ".err", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc.pid))
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"rc": rc, "seconds": round(seconds, 4), "peak_rss_mb": round(peak / 2**20, 1),
                      "max_single_rss_mb": round(single, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
