#!/usr/bin/env python3
"""Benchmark: Galera behind HAProxy behind a VIP (examples/galera), on real daemons in a lab.

In a fresh three-node lab, `reconcile apply` of the example on every node at once; then:

- formation: from the first apply to a primary component of 3 Synced nodes (every node's
  `SHOW STATUS` polled each 0.5 s);
- writer failover, ROUNDS times: a client in lb3 writes one row per connection through the
  VIP (one `mariadb` process per write, ~40 writes/s) while lb1's mysqld_safe and mariadbd are
  killed (-9); measured from the kill to the first acknowledged write on another node, with
  the writes that failed meanwhile and every acknowledged row counted on the survivors
  (lost = acknowledged but absent); then the time until lb1 is back Synced (Pacemaker
  restarts it, IST) and writes are back on it;
- desync: `SET GLOBAL wsrep_desync=ON` on lb2 to the read pool no longer reaching it, and
  from OFF to it serving reads again.

Usage: bench_galera.py [ROUNDS]   (default 3)
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import Lab, temporary_lab  # noqa: E402
from tests.lab.pcmk import apply_all, wait_for  # noqa: E402
from tests.lab import test_galera as g  # noqa: E402  (the lab test's client helpers)


def setup(lab: Lab) -> float:
    root = lab.shared / "repo"
    shutil.copytree(g.EXAMPLE, root)
    galera = root / "galera.yaml"
    status = Path(sys.executable).parent / "reconcile-galera-status"
    galera.write_text(galera.read_text().replace("/usr/local/bin/reconcile-galera-status", str(status)))
    started = time.monotonic()
    apply_all(lab, g.NODES, root)
    wait_for(lambda: g.formed(lab), 300, step=0.5, message="no primary component")
    took = time.monotonic() - started
    g.sql(lab, "lb1", "CREATE DATABASE app; CREATE TABLE app.w (id INT PRIMARY KEY); "
                      f"CREATE USER 'app'@'192.0.2.%' IDENTIFIED BY '{g.APP_PASSWORD}'; GRANT ALL ON app.* TO 'app'@'192.0.2.%'")
    defaults = lab.shared / "client.cnf"
    defaults.write_text(f"[client]\nuser = app\npassword = {g.APP_PASSWORD}\nhost = {g.VIP}\nprotocol = tcp\n"
                        "connect-timeout = 5\n")
    defaults.chmod(0o600)
    lab.client_defaults = defaults
    wait_for(lambda: set(g.served_by(lab, g.WRITE, 3)) == {"lb1"}, 60, step=0.5, message="no writer")
    return took


def failover(lab: Lab, round_: int) -> dict:
    g.sql(lab, "lb1", "DELETE FROM app.w")
    script = lab.shared / "writer.py"
    script.write_text(g.WRITER)
    load = lab.popen(g.CLIENT, ["python3", str(script), str(lab.client_defaults), "10"], stdout=-1, stderr=-1,
                     text=True)
    time.sleep(3)
    pids = lab.exec("lb1", ["pgrep", "-f", "mysqld_safe|mariadbd"]).stdout.split()
    killed = time.monotonic()
    lab.exec("lb1", ["kill", "-KILL", *pids])
    run = json.loads(load.communicate(timeout=120)[0])
    after = [a for a in run["acked"] if a[1] >= killed and a[2] != "lb1"]
    ids = {a[0] for a in run["acked"]}
    rows = {int(x) for x in g.sql(lab, "lb2", "SELECT id FROM app.w").split()}
    back = time.monotonic()
    wait_for(lambda: g.formed(lab), 240, step=0.5, message="lb1 did not rejoin")
    rejoin = time.monotonic() - back
    wait_for(lambda: set(g.served_by(lab, g.WRITE, 3)) == {"lb1"}, 60, step=0.5, message="writes not back on lb1")
    return {"failover": after[0][1] - killed if after else float("nan"), "to": after[0][2] if after else None,
            "failed": len(run["failed"]), "acked": len(ids), "lost": len(ids - rows), "rejoin": rejoin}


def desync(lab: Lab) -> tuple[float, float]:
    g.sql(lab, "lb2", "SET GLOBAL wsrep_desync=ON")
    started = time.monotonic()
    wait_for(lambda: "lb2" not in g.served_by(lab, g.READ, 6), 30, step=0.2)
    out = time.monotonic() - started
    g.sql(lab, "lb2", "SET GLOBAL wsrep_desync=OFF")
    started = time.monotonic()
    wait_for(lambda: "lb2" in g.served_by(lab, g.READ, 6), 30, step=0.2)
    return out, time.monotonic() - started


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with temporary_lab(nodes=3, prefix="galb") as lab:
        formed = setup(lab)
        print(f"formation: primary component of 3 Synced nodes {formed:.1f}s after the first apply")
        results = []
        for i in range(rounds):
            r = failover(lab, i)
            results.append(r)
            print(f"failover {i + 1}: writes on {r['to']} {r['failover']:.2f}s after the kill; {r['failed']} failed, "
                  f"{r['acked']} acknowledged, {r['lost']} lost; lb1 Synced again {r['rejoin']:.1f}s later")
        times = [r["failover"] for r in results]
        print(f"failover: median {statistics.median(times):.2f}s, min {min(times):.2f}s, max {max(times):.2f}s; "
              f"failed writes {sum(r['failed'] for r in results)} in {rounds} rounds; "
              f"lost acknowledged {sum(r['lost'] for r in results)}")
        out, back = desync(lab)
        print(f"desync: out of the read pool {out:.1f}s after wsrep_desync=ON; back {back:.1f}s after OFF")
    return 0


if __name__ == "__main__":
    sys.exit(main())
