"""Benchmark: HAProxy reconciled under steady HTTP load, counting every failed request.

Runs its own lab (one node), 50 HTTP servers and two backends behind one frontend in it,
and a steady load through HAProxy (tests/fixtures/haproxy/http_client.py: threads, no
retries; any non-2xx, refused, reset or unanswered request is a failure). While the load
runs, `reconcile apply` (the CLI, inside the node, as an operator or the agent would run
it) applies:

1. 100 server changes in one new revision: weights, drains, adds, removals;
2. the same kind of 100 changes spread over 10 revisions of 10;
3. 3 structural changes, one revision each (each is a hitless reload).

Each phase runs with keep-alive clients and with a new connection per request. Prints
the numbers; asserts nothing.

    .venv/bin/python bench/bench_haproxy.py [--concurrency 8]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import Lab, temporary_lab  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "haproxy"
NODE = "lb1"
PORTS = range(19001, 19051)  # r01..r50


def server_line(name: str, port: int, weight: int = 10, state: str = "ready", maxconn: int | None = None) -> str:
    extra = f", state: {state}" if state != "ready" else ""
    extra += f", maxconn: {maxconn}" if maxconn else ""
    return f"    - {{name: {name}, address: 127.0.0.1, port: {port}, weight: {weight}{extra}}}"


def tree_text(backends: dict[str, dict[str, dict]], balance: str = "roundrobin", client_timeout: str = "30s",
              extra_backend: bool = False) -> str:
    docs = []
    for name, servers in backends.items():
        lines = "\n".join(server_line(s, **spec) for s, spec in sorted(servers.items()))
        docs.append(textwrap.dedent(f"""\
            apiVersion: reconcile/v1
            kind: Backend
            metadata: {{name: {name}}}
            spec:
              node: lb1
              balance: {balance if name == 'app' else 'roundrobin'}
              healthCheck: {{type: http, path: /, interval: 1s}}
              servers:
            """) + lines + "\n")
    rules = "    - {path: /api, backend: api}\n"
    if extra_backend:
        docs.append(textwrap.dedent("""\
            apiVersion: reconcile/v1
            kind: Backend
            metadata: {name: extra}
            spec:
              node: lb1
              servers:
                - {name: x1, address: 127.0.0.1, port: 19050}
            """))
        rules += "    - {path: /extra, backend: extra}\n"
    docs.append(textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Frontend
        metadata: {{name: web}}
        spec:
          node: lb1
          bind: [{{address: 127.0.0.1, port: 8080}}]
          defaultBackend: app
          timeouts: {{client: {client_timeout}}}
          rules:
        """) + rules)
    return "---\n".join(docs)


def initial() -> dict[str, dict[str, dict]]:
    """app: r01..r20, api: r21..r40, weight 10 each; r41..r50 are spare for adds."""
    return {
        "app": {f"r{p - 19000:02d}": {"port": p, "weight": 10} for p in PORTS[:20]},
        "api": {f"r{p - 19000:02d}": {"port": p, "weight": 10} for p in PORTS[20:40]},
    }


def hundred_changes(start: dict[str, dict[str, dict]], rounds: int = 1) -> list[dict[str, dict[str, dict]]]:
    """`rounds` successive states that together make 100 distinct server changes from
    `start`: per backend 15 weights, 15 maxconns, 10 drains, 5 removals; and 10 adds."""
    ops = []
    for backend in ("app", "api"):
        names = sorted(start[backend])
        ops += [("weight", backend, n) for n in names[:15]]
        ops += [("maxconn", backend, n) for n in names[:15]]
        ops += [("drain", backend, n) for n in names[:10]]
        ops += [("remove", backend, n) for n in names[15:20]]
    spare = [(f"r{p - 19000:02d}", p) for p in PORTS[40:50]]
    ops += [("add", "app" if i % 2 else "api", s) for i, s in enumerate(spare)]
    assert len(ops) == 100
    ops.sort(key=lambda op: zlib.crc32(repr(op).encode()))  # mixed kinds in every round, always the same
    states, state, step = [], json.loads(json.dumps(start)), len(ops) // rounds
    for r in range(rounds):
        for op, backend, name in ops[r * step:(r + 1) * step]:
            servers = state[backend]
            if op == "weight":
                servers[name]["weight"] = 20
            elif op == "maxconn":
                servers[name]["maxconn"] = 100
            elif op == "drain":
                servers[name]["state"] = "drain"
            elif op == "remove":
                del servers[name]
            else:
                servers[name[0]] = {"port": name[1], "weight": 10}
        states.append(json.loads(json.dumps(state)))
    return states


def count_changes(a: dict, b: dict) -> int:
    n = 0
    for backend in a:
        old, new = a[backend], b[backend]
        n += len(set(old) ^ set(new))
        n += sum(old[s].get(k) != new[s].get(k) for s in set(old) & set(new)
                 for k in ("weight", "state", "port", "maxconn"))
    return n


class Bench:
    def __init__(self, lab: Lab, concurrency: int):
        self.lab, self.concurrency, self.revision = lab, concurrency, 0

    def apply(self, text: str) -> dict:
        self.revision += 1
        repo = self.lab.shared / f"rev{self.revision}"
        repo.mkdir()
        (repo / "lb.yaml").write_text(text)
        started = time.monotonic()
        result = self.lab.reconcile(NODE, "apply", "--repo", str(repo), "-o", "json", timeout=300)
        wall = time.monotonic() - started
        record = json.loads(result.stdout)
        if result.returncode != 0:
            raise SystemExit(f"apply failed (rc {result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}")
        return {"engine": record["seconds"], "wall": wall, "counts": record["counts"]}

    def reloads(self) -> int:
        snippet = ("import socket; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy-master.sock');"
                   "s.sendall(b'show proc; quit\\n'); print(s.makefile().read())")
        out = self.lab.exec(NODE, ["/usr/bin/python3", "-c", snippet]).stdout
        return int(re.search(r"master\s+(\d+)", out).group(1))

    def under_load(self, keepalive: bool, seconds: float, work) -> tuple[dict, object]:
        argv = ["/usr/bin/python3", str(FIXTURES / "http_client.py"), "load", "http://127.0.0.1:8080/",
                str(seconds), str(self.concurrency)]
        api = argv.copy()
        api[3] = "http://127.0.0.1:8080/api"
        if keepalive:
            argv.append("--keepalive")
            api.append("--keepalive")
        clients = [self.lab.popen(NODE, a, stdout=subprocess.PIPE, text=True) for a in (argv, api)]
        time.sleep(1.0)  # steady state before the changes
        outcome = work()
        loads = [json.loads(c.communicate(timeout=seconds + 60)[0]) for c in clients]
        total = {k: sum(l[k] for l in loads) for k in ("requests", "ok", "non2xx", "errors")}
        total["rps"] = round(sum(l["rps"] for l in loads), 1)
        kinds: dict[str, int] = {}
        for l in loads:
            for k, v in l["error_kinds"].items():
                kinds[k] = kinds.get(k, 0) + v
        total["error_kinds"] = kinds
        return total, outcome


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=4, help="client threads per load generator (two run)")
    args = p.parse_args()
    started = time.monotonic()
    with temporary_lab(nodes=1, prefix="bh") as lab:
        specs = [f"r{p - 19000:02d}=127.0.0.1:{p}" for p in PORTS]
        servers = lab.popen(NODE, ["/usr/bin/python3", str(FIXTURES / "http_server.py"), *specs],
                            stdout=subprocess.PIPE, text=True)
        try:
            assert servers.stdout.readline().strip() == "ready"
            bench = Bench(lab, args.concurrency)
            print(f"lab up; 50 HTTP servers; 2 load generators × {args.concurrency} threads", flush=True)
            for keepalive in (True, False):
                mode = "keep-alive" if keepalive else "new connection per request"
                start = initial()
                bench.apply(tree_text(start))
                time.sleep(2.5)  # health checks up

                reloads = bench.reloads()
                one = hundred_changes(start, rounds=1)
                assert count_changes(start, one[-1]) == 100

                load, result = bench.under_load(keepalive, 6.0, lambda: bench.apply(tree_text(one[-1])))
                print(f"\n[{mode}] 100 server changes in one revision: engine {result['engine']:.2f} s "
                      f"(reconcile CLI wall {result['wall']:.2f} s), reloads {bench.reloads() - reloads}")
                print(f"  load: {load['requests']} requests ({load['rps']}/s), {load['non2xx']} non-2xx, "
                      f"{load['errors']} socket errors {load['error_kinds'] or ''}")

                bench.apply(tree_text(start))  # back (another 100 changes, not measured under load)
                time.sleep(2.5)
                reloads = bench.reloads()
                steps = hundred_changes(start, rounds=10)
                prev, n = start, 0
                for s in steps:
                    n += count_changes(prev, s)
                    prev = s
                assert n == 100

                def successive() -> list[dict]:
                    return [bench.apply(tree_text(s)) for s in steps]

                load, results = bench.under_load(keepalive, 20.0, successive)
                print(f"[{mode}] 100 server changes over 10 revisions: engine {sum(r['engine'] for r in results):.2f} s "
                      f"in all (CLI wall {sum(r['wall'] for r in results):.2f} s), reloads {bench.reloads() - reloads}")
                print(f"  load: {load['requests']} requests ({load['rps']}/s), {load['non2xx']} non-2xx, "
                      f"{load['errors']} socket errors {load['error_kinds'] or ''}")

                bench.apply(tree_text(start))
                time.sleep(2.5)
                reloads = bench.reloads()
                structural = [tree_text(start, balance="leastconn"),
                              tree_text(start, balance="leastconn", client_timeout="45s"),
                              tree_text(start, balance="leastconn", client_timeout="45s", extra_backend=True)]

                def three() -> list[dict]:
                    out = []
                    for text in structural:
                        out.append(bench.apply(text))
                        time.sleep(0.5)
                    return out

                load, results = bench.under_load(keepalive, 6.0, three)
                print(f"[{mode}] 3 structural changes: reloads {bench.reloads() - reloads}, engine "
                      f"{', '.join(format(r['engine'], '.2f') for r in results)} s")
                print(f"  load: {load['requests']} requests ({load['rps']}/s), {load['non2xx']} non-2xx, "
                      f"{load['errors']} socket errors {load['error_kinds'] or ''}")
                # the next mode starts from a fresh HAProxy
                pid = lab.read_file(NODE, "/run/haproxy.pid").strip()
                lab.exec(NODE, ["kill", pid])
                lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"])
                lab.exec(NODE, ["rm", "-rf", "/etc/haproxy/haproxy.cfg", "/var/lib/reconcile",
                                "/var/lib/haproxy/server-state"])
        finally:
            servers.terminate()
            servers.wait(timeout=10)
    print(f"\nbenchmark took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
