"""The agent in a lab node fed hostile histories and faults (issue 21): a mass-delete commit,
a restart while the newest commit is refused, a burst of 1,000 commits, a deleted and a
damaged repository, a full state folder. The agent follows a real bare repository and
converges real keepalived (the Operator of test_agent.py).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from controller.lab import temporary_lab
from tests.lab.test_agent import GIT_ENV, KA_CONF, Operator, vip, wait_for

pytestmark = pytest.mark.lab

STATE = "/var/lib/reconcile"


@pytest.fixture
def ops():
    with temporary_lab(nodes=2) as lab:
        op = Operator(lab)
        try:
            yield op
        finally:
            op.close()
            if op.log.exists():
                print(op.log.read_text()[-6000:])  # shown when the test fails


def three_vips() -> dict[str, str]:
    return {f"vip{i}.yaml": vip(f"vip{i}", f"192.0.2.{100 + i}/24", 50 + i) for i in range(1, 4)}


def agent_state(ops: Operator) -> dict:
    return ops.status().get("agent") or {}


def test_a_mass_delete_is_refused_the_last_good_revision_stays_enforced_also_after_a_restart(ops):
    ops.start()
    good = ops.push(three_vips())
    ops.converged_at(good)
    empty = ops.push({name: None for name in three_vips()}, "delete every manifest")
    agent = wait_for(lambda: agent_state(ops).get("latestRevision") == empty and agent_state(ops),
                     what="the mass delete to be seen")
    assert agent["reason"] == "PruneRefused" and agent["revision"] == good and not agent["ready"]
    assert "--allow-mass-prune" in agent["message"] and f"{good[:12]} stays applied" in agent["message"]
    assert ops.keepalived_conf().count("vrrp_instance") == 3
    # drift is still corrected against the good revision
    ops.lab.write_file("lb1", KA_CONF, ops.keepalived_conf().replace("priority 150", "priority 10"))
    wait_for(lambda: "priority 10" not in ops.keepalived_conf(), timeout=20, what="the drift to be corrected")
    text = ops.lab.exec("lb1", ["reconcile", "status"], check=False).stdout
    assert f"applied   {good[:12]}" in text and "PruneRefused" in text
    # restarted while the newest commit is still refused: the good revision is enforced at once
    assert ops.stop() == 0
    ops.lab.exec("lb1", ["rm", KA_CONF])
    ops.start()
    wait_for(lambda: ops.keepalived_conf().count("vrrp_instance") == 3, timeout=20,
             what="the good revision to be enforced at start-up")
    agent = agent_state(ops)
    assert agent["revision"] == good and agent["reason"] == "PruneRefused"
    assert agent["lastRun"]["trigger"] == "startup"
    assert ops.stop() == 0


def test_a_burst_of_a_thousand_commits_is_applied_at_its_last_commit_in_a_few_runs(ops):
    ops.start()
    first = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(first)
    runs = agent_state(ops)["runs"]
    head = ops.git("rev-parse", "HEAD")
    stream = []
    for i in range(1, 1001):
        body = vip("web-vip", "192.0.2.100/24", 51, priority=100 + i % 100 + (i == 1000) * 99)
        stream.append(f"commit refs/heads/main\ncommitter O <o@example.test> {1700000000 + i} +0000\ndata 6\nburst\n"
                      f"{'from ' + head if i == 1 else ''}\nM 100644 inline vip.yaml\ndata {len(body.encode())}\n{body}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=ops.work, input="".join(stream), text=True, check=True,
                   env={**os.environ, **GIT_ENV})
    pushed = time.monotonic()
    ops.git("push", "-q", "origin", "main")
    last = ops.git("rev-parse", "HEAD")
    ops.converged_at(last, timeout=60)
    took = time.monotonic() - pushed
    assert "priority 199" in ops.keepalived_conf()
    assert agent_state(ops)["runs"] - runs <= 3
    print(f"1,000 commits pushed at once: applied at the last one in {took:.2f}s")
    assert ops.stop() == 0


def test_a_deleted_repository_is_named_at_once_the_node_stays_enforced_and_it_is_followed_when_back(ops):
    ops.start()
    good = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(good)
    saved = ops.lab.shared / "origin-saved.git"
    shutil.move(ops.origin, saved)
    agent = wait_for(lambda: "the repository is gone" in (agent_state(ops).get("message") or "") and agent_state(ops),
                     timeout=15, what="the deleted repository to be named")
    assert agent["reason"] == "GitOperationFailed" and agent["revision"] == good
    ops.lab.write_file("lb1", KA_CONF, ops.keepalived_conf().replace("priority 150", "priority 10"))
    wait_for(lambda: "priority 150" in ops.keepalived_conf(), timeout=20, what="drift corrected meanwhile")
    shutil.move(saved, ops.origin)
    newer = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=170)})
    ops.converged_at(newer, timeout=30)
    assert ops.stop() == 0


def test_a_damaged_repository_is_named_and_a_repaired_one_followed(ops):
    ops.start()
    good = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(good)
    ref = ops.origin / "refs" / "heads" / "main"
    saved = ref.read_bytes()
    ref.write_bytes(b"\x00\x1b[2Jnot a commit\n")  # as a disk error or a bad tool leaves it
    os.kill(ops.agent_pid(), signal.SIGHUP)
    agent = wait_for(lambda: agent_state(ops).get("reason") == "GitOperationFailed" and agent_state(ops),
                     timeout=15, what="the damaged repository to be named")
    assert str(ops.origin) in agent["message"] and agent["revision"] == good
    text = ops.lab.exec("lb1", ["reconcile", "status"], check=False).stdout
    assert "\x00" not in text and "\x1b[2J" not in text
    ref.write_bytes(saved)
    newer = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=170)})
    ops.converged_at(newer, timeout=30)
    assert ops.stop() == 0


def test_the_agent_outlives_a_full_state_folder_restarts_on_it_and_converges_once_there_is_room(ops):
    ops.lab.exec("lb1", ["sh", "-c", f"mkdir -p {STATE} && mount -t tmpfs -o size=4m,nr_inodes=400 tmpfs {STATE}"])
    ops.start()
    good = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(good)
    fill = (f"dd if=/dev/zero of={STATE}/filler bs=4k 2>/dev/null; i=0; "
            f"while touch {STATE}/f$i 2>/dev/null; do i=$((i+1)); done; true")
    ops.lab.exec("lb1", ["sh", "-c", fill])
    conf = ops.keepalived_conf()
    ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=170)})
    time.sleep(3)
    assert ops.agent is not None and ops.agent.poll() is None  # alive
    assert ops.keepalived_conf() == conf  # nothing half-applied
    log = ops.log.read_text()
    assert "Traceback" not in log and ("No space left on device" in log or "no room" in log), log[-3000:]
    # restarted on the full folder: it starts (the lock needs no room) and keeps going
    os.kill(ops.agent_pid(), signal.SIGTERM)
    ops.agent.wait(30)
    ops.agent = None
    out = open(ops.log, "a")
    ops.agent = ops.lab.popen("lb1", ["reconcile", "agent", "--repo", str(ops.origin), "--ref", "main", "--resync", "10m"],
                              stdout=out, stderr=subprocess.STDOUT)
    out.close()
    time.sleep(3)
    assert ops.agent.poll() is None, ops.log.read_text()[-3000:]
    ops.lab.exec("lb1", ["sh", "-c", f"rm -f {STATE}/filler {STATE}/f[0-9]*"])
    os.kill(ops.agent_pid(), signal.SIGHUP)
    latest = ops.git("rev-parse", "HEAD")
    ops.converged_at(latest, timeout=30)
    assert "priority 170" in ops.keepalived_conf()
    assert ops.stop() == 0
