"""Galera behind HAProxy behind a keepalived VIP, end to end, from examples/galera (issue 18).

One lab for the module (lb1..lb3), the tests run in order on one cluster's life: the
example's manifests form a Pacemaker cluster that runs MariaDB as a promotable galera clone
and the status endpoint as a clone; reconcile writes each node's wsrep option file; the
three nodes form one primary component, bootstrapped from the node the manifest names.
HAProxy on every node sends writes to one writer (the others backup) and reads to every
Synced node; keepalived holds the VIP. Then the writer's MariaDB is killed under a stream
of writes (no acknowledged write may be lost), and a node set Desynced leaves the read
pool and comes back. Times are printed (run with -s); waits are bounded and condition-based.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from controller.lab import Lab, temporary_lab
from tests.lab.pcmk import apply_all, crm_mon, reconcile, wait_for

pytestmark = pytest.mark.lab
NODES = ["lb1", "lb2", "lb3"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "galera"
VIP = "192.0.2.150"
WRITE, READ = 3306, 3307
CLIENT = "lb3"  # where the test's clients run: they reach the VIP like any client on the LAN
APP_PASSWORD = "App.Pass-4711"

# A client that writes one row per connection through the VIP and reports, per row, whether
# the commit was acknowledged and which node served it: the failover test's load.
WRITER = r"""
import json, subprocess, sys, time
defaults, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
acked, failed, i = [], [], 0
while time.monotonic() < until:
    i += 1
    t = time.monotonic()
    r = subprocess.run(["mariadb", f"--defaults-extra-file={defaults}", "-N", "-B", "-e",
                        f"INSERT INTO app.w (id) VALUES ({i}); SELECT @@wsrep_node_name"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        acked.append([i, t, r.stdout.strip()])
    else:
        failed.append([i, t, (r.stderr.strip().splitlines() or ["?"])[0]])
    time.sleep(0.02)
print(json.dumps({"acked": acked, "failed": failed}))
"""


def sql(lab: Lab, node: str, query: str, check: bool = True) -> str:
    """A query on the node's own mysqld, over its socket as root (unix_socket auth)."""
    r = lab.exec(node, ["mariadb", "-N", "-B", "-e", query], check=check, timeout=30)
    return r.stdout.strip()


def wsrep(lab: Lab, node: str) -> dict[str, str]:
    out = sql(lab, node, "SHOW GLOBAL STATUS LIKE 'wsrep_%'", check=False)
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def formed(lab: Lab) -> bool:
    states = {n: wsrep(lab, n) for n in NODES}
    return all(s.get("wsrep_cluster_size") == "3" and s.get("wsrep_local_state_comment") == "Synced"
               and s.get("wsrep_cluster_status") == "Primary" for s in states.values())


def through(lab: Lab, port: int, query: str = "SELECT @@wsrep_node_name") -> tuple[int, str]:
    """One client connection to the VIP from CLIENT: (exit code, output)."""
    r = lab.exec(CLIENT, ["mariadb", f"--defaults-extra-file={lab.client_defaults}", f"--port={port}", "-N", "-B",
                          "-e", query], check=False, timeout=30)
    return r.returncode, (r.stdout.strip() if r.returncode == 0 else r.stderr.strip())


def served_by(lab: Lab, port: int, n: int = 9) -> list[str]:
    return [out for rc, out in (through(lab, port) for _ in range(n)) if rc == 0]


def status_endpoint(lab: Lab, node: str) -> int:
    code = ("import urllib.request, urllib.error, sys\n"
            f"try: print(urllib.request.urlopen('http://{lab.address(node)}:9200/', timeout=3).status)\n"
            "except urllib.error.HTTPError as e: print(e.code)\n"
            "except OSError: print(0)\n")
    return int(lab.exec(CLIENT, ["python3", "-c", code]).stdout.strip() or 0)


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=3, prefix="gal") as lab:
        yield lab


@pytest.fixture(scope="module")
def repo(lab: Lab) -> Path:
    """The example as it is, but for where this installation put the status endpoint."""
    root = lab.shared / "repo"
    shutil.copytree(EXAMPLE, root)
    status = Path(sys.executable).parent / "reconcile-galera-status"
    assert status.exists(), "reconcile-galera-status is not installed (pip install -e .)"
    galera = root / "galera.yaml"
    galera.write_text(galera.read_text().replace("/usr/local/bin/reconcile-galera-status", str(status)))
    return root


def test_three_nodes_form_a_primary_component_bootstrapped_from_the_named_node(lab, repo):
    started = time.monotonic()
    results = apply_all(lab, NODES, repo)
    applied = time.monotonic() - started
    assert all(any(o["kind"] == "Galera" and o["status"] == "changed" for o in r["objects"]) for r in results.values())
    wait_for(lambda: formed(lab), 300, step=1, message="no primary component of 3 Synced nodes",
             show=lambda: crm_mon(lab, "lb1") + json.dumps({n: wsrep(lab, n) for n in NODES}, indent=1))
    took = time.monotonic() - started
    # the galera agent bootstrapped from lb1, the node the Galera manifest names
    log = lab.read_file("lb1", "/var/log/pacemaker/pacemaker.log")
    assert "Node <lb1> is bootstrapping the cluster" in log
    for n in ("lb2", "lb3"):
        assert "is bootstrapping the cluster" not in lab.read_file(n, "/var/log/pacemaker/pacemaker.log")
    conf = lab.read_file("lb2", "/etc/mysql/mariadb.conf.d/62-reconcile-galera.cnf")
    assert "wsrep_node_address = 192.0.2.12" in conf and "wsrep_cluster_address = gcomm://lb2,lb3,lb1" in conf
    # a second pass changes nothing, and health sees a Synced member of the whole cluster
    again = apply_all(lab, ["lb2"], repo)["lb2"]
    assert all(o["status"] in ("in-sync", "deferred") for o in again["objects"]), again
    rc, plan = reconcile(lab, "lb2", repo, "--dry-run")
    [galera] = [o for o in plan["objects"] if o["kind"] == "Galera"]
    assert rc == 0 and galera["health"]["status"] == "Healthy" and galera["health"]["reason"] == "Synced", galera
    print(f"\nreconcile apply on 3 nodes: {applied:.1f}s; primary component of 3 Synced nodes after {took:.1f}s")


def test_writes_through_the_vip_land_on_the_one_writer_and_reads_spread(lab, repo):
    sql(lab, "lb1", "CREATE DATABASE IF NOT EXISTS app; CREATE TABLE IF NOT EXISTS app.w (id INT PRIMARY KEY); "
                    f"CREATE USER IF NOT EXISTS 'app'@'192.0.2.%' IDENTIFIED BY '{APP_PASSWORD}'; "
                    "GRANT ALL ON app.* TO 'app'@'192.0.2.%'")
    defaults = lab.shared / "client.cnf"  # the password in a 0600 file, never in argv
    defaults.write_text(f"[client]\nuser = app\npassword = {APP_PASSWORD}\nhost = {VIP}\nprotocol = tcp\n"
                        "connect-timeout = 5\n")
    defaults.chmod(0o600)
    lab.client_defaults = defaults
    wait_for(lambda: all(status_endpoint(lab, n) == 200 for n in NODES), 60, message="status endpoints not 200")
    wait_for(lambda: through(lab, WRITE)[0] == 0, 60, step=0.5, message="no writer behind the VIP",
             show=lambda: str(through(lab, WRITE)))
    # the backups serve until lb1's checks have risen (rise 3 after the status server
    # answered): then lb1, and it alone, takes every write
    wait_for(lambda: set(served_by(lab, WRITE, 3)) == {"lb1"}, 30, step=0.5, message="writes did not go to lb1",
             show=lambda: str(served_by(lab, WRITE, 3)))
    assert set(served_by(lab, WRITE)) == {"lb1"}
    wait_for(lambda: len(set(served_by(lab, READ))) == 3, 30, step=0.5, message="reads do not reach every node")
    rc, out = through(lab, WRITE, "INSERT INTO app.w (id) VALUES (0); SELECT COUNT(*) FROM app.w")
    assert rc == 0 and out == "1", out
    assert sql(lab, "lb3", "SELECT COUNT(*) FROM app.w") == "1"


def test_killing_the_writers_mariadb_moves_writes_to_the_next_without_losing_one(lab, repo):
    script = lab.shared / "writer.py"
    script.write_text(WRITER)
    load = lab.popen(CLIENT, ["python3", str(script), str(lab.client_defaults), "14"], stdout=-1, stderr=-1, text=True)
    time.sleep(3)  # writes flow to lb1
    pids = lab.exec("lb1", ["pgrep", "-f", "mysqld_safe|mariadbd"]).stdout.split()
    killed = time.monotonic()
    lab.exec("lb1", ["kill", "-KILL", *pids])
    stdout, stderr = load.communicate(timeout=120)
    assert load.returncode == 0, stderr
    run = json.loads(stdout)
    acked, failed = run["acked"], run["failed"]
    before = [a for a in acked if a[1] < killed]
    after = [a for a in acked if a[1] >= killed]
    assert before and {a[2] for a in before} == {"lb1"}
    assert after, f"no write succeeded after the writer died: {failed[-3:]}"
    assert after[0][2] == "lb2", after[:3]  # the first backup took over
    # every acknowledged write is there, on both survivors
    ids = {a[0] for a in acked}
    for node in ("lb2", "lb3"):
        rows = {int(x) for x in sql(lab, node, "SELECT id FROM app.w WHERE id > 0").split()}
        assert ids <= rows, f"{node} lost acknowledged writes: {sorted(ids - rows)[:10]}"
    failover = after[0][1] - killed
    print(f"\nwriter failover: first write on lb2 {failover:.2f}s after lb1's mysqld was killed; "
          f"{len(failed)} writes failed, {len(acked)} acknowledged, 0 acknowledged lost; "
          f"rows on lb2 {len(ids)}/{len(ids)}")
    # Pacemaker restarts lb1's MariaDB; it rejoins (IST) and the cluster is whole again
    started = time.monotonic()
    wait_for(lambda: formed(lab), 240, step=1, message="lb1 did not rejoin",
             show=lambda: crm_mon(lab, "lb2") + json.dumps(wsrep(lab, "lb1"), indent=1))
    print(f"lb1 rejoined Synced {time.monotonic() - started:.1f}s after the failover")
    wait_for(lambda: set(served_by(lab, WRITE, 3)) == {"lb1"}, 60, step=0.5, message="writes did not return to lb1")


def test_a_desynced_node_leaves_the_read_pool_and_returns_when_synced(lab, repo):
    assert status_endpoint(lab, "lb2") == 200
    sql(lab, "lb2", "SET GLOBAL wsrep_desync=ON")
    try:
        assert wsrep(lab, "lb2")["wsrep_local_state_comment"] in ("Donor/Desynced", "Donor")
        assert status_endpoint(lab, "lb2") == 503
        started = time.monotonic()
        wait_for(lambda: "lb2" not in served_by(lab, READ, 6) and "lb2" not in served_by(lab, READ, 6), 30,
                 step=0.5, message="lb2 stayed in the read pool while Desynced")
        left = time.monotonic() - started
        assert "lb2" not in served_by(lab, READ, 9)
        assert set(served_by(lab, WRITE, 3)) == {"lb1"}
        rc, plan = reconcile(lab, "lb2", repo, "--dry-run")
        [galera] = [o for o in plan["objects"] if o["kind"] == "Galera"]
        assert rc == 0 and galera["health"]["reason"] == "Donor", galera  # in sync, and not serving
    finally:
        sql(lab, "lb2", "SET GLOBAL wsrep_desync=OFF")
    wait_for(lambda: wsrep(lab, "lb2").get("wsrep_local_state_comment") == "Synced", 60)
    started = time.monotonic()
    wait_for(lambda: "lb2" in served_by(lab, READ, 6), 30, step=0.5, message="lb2 did not come back to the read pool")
    print(f"\nDesynced lb2 left the read pool within {left:.1f}s; back {time.monotonic() - started:.1f}s after Synced")
