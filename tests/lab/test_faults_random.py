"""Randomized kill -9 of `reconcile apply` on a real node (issue 21), at random steps of
reconcile itself and, in a second test, at random moments of the whole process group.

A stack of HAProxy backends and frontends, keepalived VIPs, LXC containers and tmpfs mounts
goes back and forth between two revisions that create, update and delete objects of each
kind. Each trial kills the apply (SIGKILL, through the fault-injection hook of
reconcilers/faults.py) at a step drawn at random among the steps of that transition — right
after a command, before or after a file's rename, after the inventory recorded a create,
after a reconciler's apply returned — then runs apply again, towards the same revision or
back to the one before (so that what the killed run half made must be pruned), and checks:

- converged on re-run: the second apply exits 0 and a plan right after it has nothing to do;
- the node is exactly the revision (read from the daemons themselves: haproxy.cfg and the
  runtime API agree, keepalived.conf, lxc-ls, /proc/mounts), and no object of the stack is
  outside the inventory (nor in it without being there);
- no temp file is left anywhere (/etc, /var/lib, /tmp, /run, /mnt);
- no container is half made (`partial`, no config, no rootfs).

RECONCILE_FAULT_SEED repeats a run; RECONCILE_FAULT_TRIALS changes the number of trials
(default 30). A failure prints the seed, the trial, the step and what differed.
"""
from __future__ import annotations

import os
import random
import time

import pytest

from controller.lab import temporary_lab
from tests.lab.faultlab import NODE, A, B, apply, clean_node, containers, leftovers, node_matches, plan, write_tree

pytestmark = pytest.mark.lab

TRIALS = int(os.environ.get("RECONCILE_FAULT_TRIALS", "30"))
GROUP_TRIALS = int(os.environ.get("RECONCILE_FAULT_GROUP_TRIALS", "16"))

# Runs in the node: apply in a session of its own, killed -9 as a whole (reconcile and every
# child it waits for, lxc-create and its template included, as `systemctl kill` of the agent
# does) after argv[2] seconds, unless it finished first.
KILL_GROUP_AFTER = r"""
import os, signal, subprocess, sys
apply = subprocess.Popen(["reconcile", "apply", "--no-health", "--allow-mass-prune", "--repo", sys.argv[1]],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    apply.wait(timeout=float(sys.argv[2]))
    print("finished")
except subprocess.TimeoutExpired:
    os.killpg(apply.pid, signal.SIGKILL)
    apply.wait()
    print("killed")
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=1, prefix="fr") as lab:
        yield lab


def steps_of(lab, tree: str) -> list[str]:
    """The steps of one apply towards `tree` from where the node is (a traced run, undone
    afterwards by the caller)."""
    trace = lab.shared / f"trace-{time.monotonic_ns()}"
    r = apply(lab, tree, env={"RECONCILE_FAULT_TRACE": str(trace)})
    assert r.returncode == 0, r.stdout + r.stderr
    return trace.read_text().splitlines()


def test_apply_killed_at_random_steps_always_converges_on_rerun_and_leaves_nothing_behind(lab):
    seed = int(os.environ.get("RECONCILE_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    trees = {r.name: write_tree(lab, r) for r in (A, B)}
    revisions = {"a": A, "b": B}
    before = leftovers(lab)
    r = apply(lab, trees["a"])
    assert r.returncode == 0, r.stdout + r.stderr
    # how many steps each transition has (for drawing where to kill), measured once
    count = {"b": len(steps_of(lab, trees["b"])), "a": len(steps_of(lab, trees["a"]))}
    assert min(count.values()) >= 15, count
    current = "a"
    log: list[str] = []
    killed = 0
    recovery: list[float] = []  # seconds of each re-run that converged the node again
    started = time.monotonic()
    for trial in range(1, TRIALS + 1):
        target = "b" if current == "a" else "a"
        step = rng.randint(1, count[target])
        run = apply(lab, trees[target], env={"RECONCILE_FAULT_KILL": f"*@{step}",
                                             "RECONCILE_FAULT_TRACE": f"{lab.shared}/trial-{trial}"})
        trace = (lab.shared / f"trial-{trial}").read_text().splitlines()
        at = trace[-1].removeprefix("KILLED at ") if trace and trace[-1].startswith("KILLED") else "(not killed)"
        killed += at != "(not killed)"
        # half the time the next run goes on towards the target, half the time git went
        # back before it ran: what the killed run created must then be pruned
        final = target if rng.random() < 0.5 else current
        log.append(f"trial {trial}: {current}→{target} killed at step {step} ({at}), rerun to {final}")
        context = f"seed {seed}\n" + "\n".join(log[-5:])
        t = time.monotonic()
        rerun = apply(lab, trees[final])
        recovery.append(time.monotonic() - t)
        assert rerun.returncode == 0, f"{context}\nrerun failed:\n{rerun.stdout}{rerun.stderr}"
        check = plan(lab, trees[final])
        assert check.returncode == 0, f"{context}\nnot converged after the rerun:\n{check.stdout}{check.stderr}"
        problems = node_matches(lab, revisions[final], before)
        assert not problems, f"{context}\n" + "\n".join(problems)
        current = final
    took = time.monotonic() - started
    recovery.sort()
    print(f"seed {seed}: {TRIALS} trials ({killed} killed) in {took:.0f}s; recovery (re-run apply) "
          f"min {recovery[0]:.2f}s, median {recovery[len(recovery) // 2]:.2f}s, max {recovery[-1]:.2f}s")
    assert killed >= TRIALS * 0.9  # a step drawn past the end of a transition does not kill
    clean_node(lab)


def test_apply_and_its_children_killed_at_random_moments_always_converge_on_rerun(lab):
    """The same checks, with the kill at a random moment of the run, of the whole process
    group: a tool reconcile runs (lxc-create, haproxy -c, mount) can die half-way too."""
    seed = int(os.environ.get("RECONCILE_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    trees = {r.name: write_tree(lab, r) for r in (A, B)}
    revisions = {"a": A, "b": B}
    before = leftovers(lab)
    assert apply(lab, trees["a"]).returncode == 0
    took: dict[str, float] = {}
    for target in ("b", "a"):  # how long each transition takes, to draw the moment from
        t = time.monotonic()
        assert apply(lab, trees[target]).returncode == 0
        took[target] = time.monotonic() - t
    current, log, killed, half_made, recovery = "a", [], 0, 0, []
    for trial in range(1, GROUP_TRIALS + 1):
        target = "b" if current == "a" else "a"
        after = rng.uniform(0.05, 0.8 * took[target])  # runs vary: mostly before the end
        r = lab.exec(NODE, ["python3", "-c", KILL_GROUP_AFTER, trees[target], f"{after:.3f}"], check=False, timeout=300)
        assert r.stdout.strip() in ("killed", "finished"), r.stdout + r.stderr
        killed += r.stdout.strip() == "killed"
        half_made += any(c["partial"] for c in containers(lab).values())  # lxc-create cut short
        final = target if rng.random() < 0.5 else current
        log.append(f"trial {trial}: {current}→{target} {r.stdout.strip()} after {after:.2f}s, rerun to {final}")
        context = f"seed {seed}\n" + "\n".join(log[-5:])
        t = time.monotonic()
        rerun = apply(lab, trees[final])
        recovery.append(time.monotonic() - t)
        assert rerun.returncode == 0, f"{context}\nrerun failed:\n{rerun.stdout}{rerun.stderr}"
        check = plan(lab, trees[final])
        assert check.returncode == 0, f"{context}\nnot converged after the rerun:\n{check.stdout}{check.stderr}"
        problems = node_matches(lab, revisions[final], before)
        assert not problems, f"{context}\n" + "\n".join(problems)
        current = final
    recovery.sort()
    print(f"seed {seed}: {GROUP_TRIALS} group kills ({killed} killed mid-run, {half_made} left a half-made "
          f"container; transitions took "
          f"{took['b']:.1f}s / {took['a']:.1f}s); recovery min {recovery[0]:.2f}s, "
          f"median {recovery[len(recovery) // 2]:.2f}s, max {recovery[-1]:.2f}s")
    assert killed >= GROUP_TRIALS / 2  # a run that finished first is still checked, but is no kill
    clean_node(lab)
