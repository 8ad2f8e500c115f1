"""Faults must never leave a node unmanaged (issue 21), the generic part: state files read
strictly and written so that a failure names the file, the node lock, temp files of killed
runs, kill -9 at chosen steps (the fault-injection hook), mass prunes refused whole,
"cannot observe" never taken for absent, and "deferred" honest about who owes the change.

The node's state is JSON files in a temporary folder managed by real reconcilers of a tiny
kind (tests/unit/json_kinds.py); kills are real SIGKILLs of real child processes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import reconcilers
from controller.cli import main as cli_main
from controller.engine import Engine
from controller.loader import load_tree
from controller.scratch import sweep as sweep_scratch
from controller.state import Inventory, NodeLock, LockHeld, StateError, check_state, read_history, save_run
from controller.status import collect, exit_code, render
from reconcilers.base import (
    UNFINISHED, ApplyError, AtomicWriter, Change, Deferred, Desired, Node, PerObject, Runner, TempJournal,
)
from tests.unit import json_kinds

ROOT = Path(__file__).resolve().parents[2]


class Backends(PerObject):
    """Backends as <store>/backend-<name>.json. `deferred_to`: names another node owes;
    `unobservable`: observe raises (a daemon that does not answer)."""

    kind = "Backend"
    deferred_to: dict[str, tuple[str, bool]] = {}
    unobservable = False
    unfinished: set[str] = set()  # names whose two places disagree (a run stopped between them)

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance})
                            for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        if self.unobservable:
            raise ApplyError("the backend store does not answer (timed out after 5s)")
        seen = json_kinds.read_objects("backend")
        for name in self.unfinished & set(seen):
            seen[name][UNFINISHED] = "the file and the daemon differ"
        return {self.kind: seen}

    def apply_one(self, change: Change, node: Node):
        if change.name in self.deferred_to:
            owner, assured = self.deferred_to[change.name]
            raise Deferred(f"applied by the DC {owner}", owner=owner, assured=assured)
        json_kinds.write_object("backend", change, node)
        self.unfinished.discard(change.name)


def backend(name: str, balance: str = "roundrobin") -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  balance: {balance}\n  servers:\n    - {{name: s1, address: 198.51.100.1, port: 80}}\n")


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:Backends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "tests.unit.json_kinds:JsonFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")  # this test machine is lb1
    monkeypatch.setattr(Backends, "deferred_to", {})
    monkeypatch.setattr(Backends, "unobservable", False)
    monkeypatch.setattr(Backends, "unfinished", set())
    repo = tmp_path / "repo"
    repo.mkdir()

    class Env:
        state = tmp_path / "state"

        def __init__(self):
            self.store = store

        def write(self, *docs: str) -> None:
            (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
            (repo / "lb.yaml").write_text("".join(docs))

        def engine(self, dry_run: bool = False, **kw) -> Engine:
            return Engine(load_tree(repo), Node("lb1", Runner(dry_run=dry_run), self.state), **kw)

        def cli(self, *args: str) -> int:
            return cli_main([*args, "--repo", str(repo), "--node", "lb1", "--state-dir", str(self.state)])

        def files(self) -> set[str]:
            return {p.stem.split("-", 1)[1] for p in store.glob("backend-*.json")}

        def status(self, record) -> dict[str, str]:
            return {f"{o.kind}/{o.name}": o.status for o in record.objects}

    return Env()


# --- state files: read strictly --------------------------------------------------------------


@pytest.mark.parametrize("content, problem", [
    ("{not json", "is damaged: not JSON"),
    ("[]", "is damaged: a JSON object expected, found a list"),
    ("null", "is damaged: a JSON object expected, found null"),
    ('{"version": 1, "objects": []}', 'is damaged: "objects" is a list, not an object'),
    ('{"version": 1, "objects": {"Backend/a": 3}}', "is damaged: entry 'Backend/a' is not a Kind/name"),
    ('{"version": 1, "objects": {"nokind": {"hash": null}}}', "is damaged: entry 'nokind' is not a Kind/name"),
])
def test_a_damaged_inventory_is_an_error_naming_the_file_never_an_empty_one(env, capsys, content, problem):
    env.write(backend("a"), backend("b"))
    assert env.cli("apply") == 0
    env.write(backend("a"))  # b leaves git: with the inventory read as empty, b would never be pruned
    (env.state / "inventory.json").write_text(content)
    for args in (["--dry-run"], ["apply"], ["validate"]):
        capsys.readouterr()
        assert env.cli(*args) == 1
        err = capsys.readouterr().err
        assert f"{env.state / 'inventory.json'}: {problem}" in err and "move it aside" in err, err
        assert "Traceback" not in err
    assert env.files() == {"a", "b"}  # nothing changed
    assert (env.state / "inventory.json").read_text() == content


def test_an_unreadable_inventory_is_an_error_too(env, capsys):
    env.write(backend("a"))
    env.cli("apply")
    (env.state / "inventory.json").unlink()
    (env.state / "inventory.json").mkdir()  # EISDIR: cannot be read
    capsys.readouterr()
    assert env.cli("apply") == 1
    assert f"{env.state / 'inventory.json'}: cannot be read: Is a directory" in capsys.readouterr().err


def test_a_damaged_history_or_status_stops_an_apply_before_it_changes_anything(env, capsys):
    env.write(backend("a"))
    env.cli("apply")
    env.write(backend("a", balance="leastconn"))
    (env.state / "history.json").write_text('[{"result": "in-sync"}, 7]')
    capsys.readouterr()
    assert env.cli("apply") == 1
    err = capsys.readouterr().err
    assert f"{env.state / 'history.json'}: is damaged: entry 2 is a number, not an object" in err
    assert json.loads((env.store / "backend-a.json").read_text())["balance"] == "roundrobin"


def test_status_shows_a_damaged_history_and_escapes_control_characters_instead_of_crashing(tmp_path, capsys):
    state = tmp_path / "state"
    save_run(state, {"revision": "abc\x00\x1b[31mdef", "mode": "apply", "started": "2024-01-01T00:00:00Z",
                     "seconds": 0.1, "result": "failed", "counts": {}, "errors": ["git said \x00\x07 here"],
                     "objects": []})
    data = collect(state)
    text = render(data)
    assert "\x00" not in text and "\x1b" not in text and "\x07" not in text
    assert "\\x00" in text and "git said \\x00\\x07 here" in text
    (state / "history.json").write_text('[7, "x"]')
    data = collect(state)
    assert exit_code(data) == 1
    text = render(data)
    assert f"State file problem: {state / 'history.json'}: is damaged: entry 1 is a number" in text
    assert "Last run: failed" in text  # the rest is still shown
    (state / "history.json").write_text('[{"counts": [1, 2], "seconds": "soon"}]')  # fields of the wrong type
    assert "(a damaged entry:" in render(collect(state))


# --- state files: written so that a failure is clean ---------------------------------------


def test_a_state_folder_that_cannot_be_written_stops_the_run_before_any_change(env, capsys):
    env.write(backend("a"))
    env.cli("apply")
    env.write(backend("a"), backend("b"))
    check_state(env.state)  # fine now
    # a file where the room probe would go: writing in the folder fails as on a read-only disk
    (env.state / "inventory.json").chmod(0o444)
    os.chmod(env.state, 0o555)
    try:
        if os.access(env.state, os.W_OK):  # root ignores modes: use an immutable folder instead
            os.chmod(env.state, 0o755)
            r = subprocess.run(["chattr", "+i", str(env.state)], capture_output=True)
            if r.returncode:
                pytest.skip(f"cannot make a read-only folder here: {r.stderr.strip()}")
        record = env.engine().apply()
        assert record.result == "failed" and record.passes == 0
        assert any(e.startswith(f"nothing was changed: {env.state}") for e in record.errors), record.errors
        assert env.files() == {"a"}
    finally:
        subprocess.run(["chattr", "-i", str(env.state)], capture_output=True)
        os.chmod(env.state, 0o755)


def test_a_write_error_names_the_file(tmp_path):
    target = tmp_path / "sub"
    target.mkdir()
    (target / "conf").mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(ApplyError, match=rf"cannot write {target / 'conf'}: Is a directory"):
        AtomicWriter(Node("lb1", Runner(), tmp_path / "state")).write(target / "conf", "x")
    assert list(target.iterdir()) == [target / "conf"]  # and the temp file is gone


# --- the node lock -----------------------------------------------------------------------------


HOLD_LOCK = ("import sys, time; from controller.state import NodeLock; NodeLock(sys.argv[1]).acquire(); "
             "print('held', flush=True); time.sleep(60)")


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "lock").unlink()  # a cleanup script, an operator
        with pytest.raises(LockHeld, match=r"another reconcile \(pid \?\) holds"):
            NodeLock(tmp_path).acquire()
        from controller.status import lock_holder

        assert lock_holder(tmp_path) == -1  # held, PID unknown: status still says the agent runs
    finally:
        holder.kill()
        holder.wait()
    with NodeLock(tmp_path):
        assert (tmp_path / "lock").read_text().strip() == str(os.getpid())


# --- temp files of killed runs ----------------------------------------------------------------


def test_taking_the_lock_removes_temp_files_a_killed_writer_left_in_the_state_folder(tmp_path):
    (tmp_path / ".inventory.json.x1y2z3.tmp").write_text("{")
    (tmp_path / ".status.json.abcdef").write_text("{")  # named so by older versions
    (tmp_path / "inventory.json").write_text('{"version": 1, "objects": {}}')
    with NodeLock(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.json", "lock"]


def test_temp_files_a_killed_apply_left_beside_its_targets_are_removed_by_the_next_apply(env, tmp_path):
    env.write(backend("a"))
    env.engine().apply()
    journal = (env.state / "temp-files").read_text()
    assert f"{env.store}/.backend-a.json.*.tmp" in journal
    (env.store / ".backend-a.json.k1ll3d.tmp").write_text("half")  # as a kill -9 leaves it
    record = env.engine().apply()  # nothing to change: backend-a.json is not written again
    assert record.result == "converged" or record.result == "in-sync"
    assert sorted(p.name for p in env.store.iterdir()) == ["backend-a.json"]


def test_temp_folders_of_dead_reconcile_processes_are_removed_and_live_ones_kept(tmp_path):
    script = ("import os, sys, tempfile; from controller.scratch import use_private_tmp; "
              "print(use_private_tmp(), flush=True); tempfile.mkstemp(prefix='reconcile-cib-'); "
              "os.kill(os.getpid(), 9) if sys.argv[1] == 'kill' else __import__('time').sleep(30)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    killed = subprocess.run([sys.executable, "-c", script, "kill"], capture_output=True, text=True, env=env, cwd=ROOT)
    left = Path(killed.stdout.strip())
    assert left.parent == tmp_path and len(list(left.iterdir())) == 1  # kill -9: nothing cleaned up
    alive = subprocess.Popen([sys.executable, "-c", script, "live"], stdout=subprocess.PIPE, text=True, env=env,
                             cwd=ROOT)
    try:
        mine = Path(alive.stdout.readline().strip())
        assert not left.exists() and mine.is_dir()  # the next process removed the dead one's
        assert sweep_scratch(tmp_path) == [] and mine.is_dir()  # and a live one's is kept
    finally:
        alive.send_signal(signal.SIGINT)  # ends it normally (KeyboardInterrupt)
        alive.wait()
    assert not mine.exists()  # a process that ends normally removes its own


def test_the_temp_journal_removes_only_temp_files_of_the_targets_it_noted(tmp_path):
    (tmp_path / ".haproxy.cfg.abc.tmp").write_text("x")
    (tmp_path / ".other.cfg.abc.tmp").write_text("y")
    journal = TempJournal(tmp_path / "state")
    journal.note(tmp_path / ".haproxy.cfg.*.tmp")
    journal.note(tmp_path / ".haproxy.cfg.*.tmp")
    assert journal.path.read_text().count("\n") == 1
    assert journal.sweep() == [tmp_path / ".haproxy.cfg.abc.tmp"]
    assert (tmp_path / ".other.cfg.abc.tmp").exists() and not journal.path.exists()


# --- kill -9 at a chosen step ------------------------------------------------------------------


KILLED_APPLY = textwrap.dedent("""
    import sys
    from pathlib import Path
    import reconcilers
    from tests.unit import json_kinds
    json_kinds.STORE = Path(sys.argv[1])
    reconcilers.REGISTRY["Backend"] = "tests.unit.test_faults:Backends"
    reconcilers.REGISTRY["Frontend"] = "tests.unit.json_kinds:JsonFrontends"
    reconcilers.REGISTRY["Cluster"] = "tests.unit.json_kinds:GroupCluster"
    import controller.identity
    controller.identity.this_host = lambda: "lb1"  # this test machine is lb1
    from controller.cli import main
    sys.exit(main(["apply", "--repo", sys.argv[2], "--node", "lb1", "--state-dir", sys.argv[3]]))
""")


def killed_apply(env, tmp_path, kill: str = "", trace: Path | None = None) -> subprocess.CompletedProcess:
    extra = {"RECONCILE_FAULT_KILL": kill} if kill else {}
    if trace is not None:
        extra["RECONCILE_FAULT_TRACE"] = str(trace)
    return subprocess.run([sys.executable, "-c", KILLED_APPLY, str(env.store), str(tmp_path / "repo"), str(env.state)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **extra})


@pytest.mark.parametrize("step", ["engine:owned Backend/b", "engine:applied Backend"])
def test_an_apply_killed_at_any_step_of_a_create_leaves_it_owned_and_the_next_run_prunes_it(env, tmp_path, step):
    env.write(backend("a"))
    assert killed_apply(env, tmp_path).returncode == 0
    env.write(backend("a"), backend("b"))
    run = killed_apply(env, tmp_path, step)
    assert run.returncode == -signal.SIGKILL, run.stderr
    owned = Inventory(env.state).objects
    assert "Backend/b" in owned and owned["Backend/b"]["hash"] is None  # owned from before it existed
    env.write(backend("a"))  # b leaves git before the next run
    assert killed_apply(env, tmp_path).returncode == 0
    assert env.files() == {"a"} and set(Inventory(env.state).objects) == {"Backend/a"}
    assert sorted(p.name for p in env.store.iterdir()) == ["backend-a.json"]  # no temp file either


def test_the_trace_lists_a_runs_steps_and_a_kill_names_the_nth(env, tmp_path):
    env.write(backend("a"), backend("b"), backend("c"))
    trace = tmp_path / "trace"
    assert killed_apply(env, tmp_path, trace=trace).returncode == 0
    steps = trace.read_text().splitlines()
    assert [s for s in steps if s.startswith("engine:owned")] == [
        "engine:owned Backend/a", "engine:owned Backend/b", "engine:owned Backend/c"]
    assert f"write:{env.store}/backend-b.json" in steps and any(s.startswith("state:") for s in steps)
    for f in env.store.iterdir():
        f.unlink()
    (env.state / "inventory.json").unlink()
    trace.unlink()
    assert killed_apply(env, tmp_path, "write:*@2", trace).returncode == -signal.SIGKILL
    assert trace.read_text().splitlines()[-1] == f"KILLED at write:{env.store}/backend-b.json", trace.read_text()
    assert env.files() == {"a", "b"}


# --- the engine: mass prune, cannot observe, deferred -----------------------------------------


def test_a_mass_prune_refuses_the_whole_revision_its_creates_and_updates_too(env):
    env.write(*(backend(f"b{i}") for i in range(4)))
    env.engine().apply()
    env.write(backend("b0", balance="leastconn"), backend("new"))
    record = env.engine().apply()
    assert record.refused == "PruneRefused" and record.exit_code() == 1
    assert env.files() == {"b0", "b1", "b2", "b3"}
    assert json.loads((env.store / "backend-b0.json").read_text())["balance"] == "roundrobin"
    status = env.status(record)
    assert status["Backend/new"] == "pending" and status["Backend/b1"] == "skipped"
    assert set(Inventory(env.state).objects) == {f"Backend/b{i}" for i in range(4)}


def test_a_tree_that_drops_most_owned_objects_is_refused_even_when_they_were_destroyed_by_hand_first(env):
    env.write(*(backend(f"b{i}") for i in range(4)))
    env.engine().apply()
    for f in env.store.iterdir():
        f.unlink()  # gone by hand: an empty tree now has nothing left to delete
    env.write()
    record = env.engine().apply()
    assert record.refused == "PruneRefused" and "refusing to prune 4 of 4" in record.errors[0]
    assert set(Inventory(env.state).objects) == {f"Backend/b{i}" for i in range(4)}  # nothing forgotten
    record = env.engine(allow_mass_prune=True).apply()
    assert record.exit_code() == 0 and not Inventory(env.state).objects


def test_an_observe_that_fails_is_cannot_observe_never_absent_and_deletes_or_forgets_nothing(env):
    env.write(backend("a"), backend("b"))
    env.engine().apply()
    env.write(backend("a"))  # b leaves git
    Backends.unobservable = True
    for record in (env.engine(dry_run=True).plan(), env.engine().apply()):
        assert env.status(record) == {"Backend/a": "failed"}
        (a,) = record.objects
        assert a.error == "cannot observe Backend: the backend store does not answer (timed out after 5s)"
        assert not a.notes and not a.fields  # no "drift", no create
    assert env.files() == {"a", "b"} and set(Inventory(env.state).objects) == {"Backend/a", "Backend/b"}
    Backends.unobservable = False
    assert env.status(env.engine().apply()) == {"Backend/a": "in-sync", "Backend/b": "changed"}
    assert env.files() == {"a"}


def test_an_object_whose_places_disagree_is_pending_work_never_drift(env):
    env.write(backend("a"))
    env.engine().apply()
    Backends.unfinished = {"a"}  # same state as git in the file, the daemon not yet told
    (change,) = [o for o in env.engine(dry_run=True).plan().objects]
    assert (change.status, change.action, change.drift) == ("pending", "update", False)
    assert "drift: changed outside git" not in change.notes
    assert "pending work, not drift: the file and the daemon differ" in change.notes
    assert [f for f, _, _ in change.fields] == ["unfinished"]
    record = env.engine().apply()
    assert env.status(record) == {"Backend/a": "changed"} and record.exit_code() == 0


def test_an_owned_object_gone_from_git_and_from_the_node_is_forgotten(env):
    env.write(backend("a"), backend("b"))
    env.engine().apply()
    (env.store / "backend-b.json").unlink()  # destroyed by hand
    env.write(backend("a"))
    record = env.engine().apply()
    assert env.status(record) == {"Backend/a": "in-sync"}
    assert set(Inventory(env.state).objects) == {"Backend/a"}


def test_deferred_to_another_node_is_pending_unless_that_node_is_known_to_do_it(env, capsys):
    env.write(backend("a"), backend("b"))
    Backends.deferred_to = {"a": ("lb2", False), "b": ("lb2", True)}
    record = env.engine().apply()
    assert env.status(record) == {"Backend/a": "pending", "Backend/b": "deferred"}
    assert record.exit_code() == 2  # as the plan says: a change is still pending
    (a,) = [o for o in record.objects if o.name == "a"]
    assert a.action == "create" and "not applied yet: applied by the DC lb2" in a.notes
    assert env.cli("--dry-run") == 2
    Backends.deferred_to = {"b": ("lb2", True)}
    assert env.status(env.engine().apply())["Backend/a"] == "changed"


def test_a_deferral_settled_by_its_owner_within_the_run_is_applied(env, monkeypatch):
    env.write(backend("a"))

    def owner_applies(self, change, node):  # the DC applies it while this node waits
        json_kinds.write_object("backend", change, node)
        raise Deferred("applied by the DC lb2", owner="lb2")

    monkeypatch.setattr(Backends, "apply_one", owner_applies)
    record = env.engine().apply()
    assert env.status(record) == {"Backend/a": "changed"} and record.exit_code() == 0


def test_state_files_of_the_wrong_shape_have_their_own_messages(tmp_path):
    (tmp_path / "history.json").write_text("{}")
    with pytest.raises(StateError, match=r"history.json: is damaged: a JSON list expected, found an object; move"):
        read_history(tmp_path)


# --- a container lxc-create did not finish ------------------------------------------------------

HOLD_OFD_LOCK = """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))  # F_OFD_SETLK, as lxc-create
print("locked", flush=True)
time.sleep(30)
"""


def test_a_partial_marker_nobody_holds_is_a_half_made_container_and_a_held_one_is_being_made(tmp_path):
    from reconcilers.lxc.tools import BEING_MADE, HALF_MADE, creation

    assert creation(tmp_path) is None  # lxc-create finished: no marker
    (tmp_path / "partial").write_text("")
    assert creation(tmp_path) == HALF_MADE  # killed: LXC itself would call it ongoing for good
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OFD_LOCK, str(tmp_path / "partial")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert creation(tmp_path) == BEING_MADE
    finally:
        holder.kill()
        holder.wait()
    assert creation(tmp_path) == HALF_MADE


def test_a_half_made_container_is_planned_as_removed_and_made_again_and_reported_degraded(tmp_path):
    from reconcilers.lxc.health import container_health
    from reconcilers.lxc.model import observed_from_config
    from reconcilers.lxc.reconciler import ContainerReconciler
    from reconcilers.lxc.tools import BEING_MADE, HALF_MADE, NO_CONFIG

    rec = ContainerReconciler()
    node = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    no_config = {**observed_from_config("ct1", "/var/lib/lxc", "", NO_CONFIG), UNFINISHED: HALF_MADE}
    want = {"state": "stopped", "lxcPath": "/var/lib/lxc"}
    notes = rec.explain(Change("Container", "ct1", "update", want, no_config), node)
    assert notes == [f"{HALF_MADE}: apply removes what it left (its folder in /var/lib/lxc), then creates it again"]
    notes = rec.explain(Change("Container", "ct1", "delete", None, dict(no_config, **{UNFINISHED: BEING_MADE})), node)
    assert notes == [f"{BEING_MADE}: apply waits for that lxc-create (at most 300 s), then removes what it left "
                     "(its folder in /var/lib/lxc)"]
    # a config that is not ours stays a conflict, half made or not: it is not ours to remove
    foreign = {**observed_from_config("ct1", "/var/lib/lxc", "lxc.uts.name = ct1\n", "stopped"), UNFINISHED: HALF_MADE}
    assert rec.explain(Change("Container", "ct1", "update", want, foreign), node)[0].startswith("conflict:")
    health = container_health(want, no_config, None)
    assert (health.status, health.reason) == ("Degraded", "HalfMade")


@pytest.mark.parametrize("pacemaker_runs,cibadmin,then", [
    (True, "/usr/sbin/cibadmin", "cannot observe"),  # running but not answering: hung
    (False, None, "cannot observe"),  # its tools are missing
    (False, "/usr/sbin/cibadmin", "nothing yet"),  # never started here: the Cluster starts it
    (False, "/usr/sbin/cibadmin", "saved"),  # stopped: the CIB it saved is what it starts with
])
def test_a_cib_that_cannot_be_read_is_cannot_observe_unless_pacemaker_simply_does_not_run(
        tmp_path, monkeypatch, pacemaker_runs, cibadmin, then):
    import shutil

    from reconcilers.pacemaker import daemons, tools
    from reconcilers.pacemaker.resources import CONFIG, RESOURCE, ClusterResourceReconciler

    def no_answer(node, scope=None, local=False):
        raise tools.CibUnavailable("Timed out after 15s")

    monkeypatch.setattr(tools, "query_cib", no_answer)
    monkeypatch.setattr(daemons, "running", lambda node: {"corosync": True, "pacemaker": pacemaker_runs})
    monkeypatch.setattr(shutil, "which", lambda tool: cibadmin if tool == "cibadmin" else None)
    rec = ClusterResourceReconciler()
    rec._cluster = types.SimpleNamespace(metadata=types.SimpleNamespace(name="web"))  # git wants a cluster here
    monkeypatch.setattr(tools, "SAVED_CIB", tmp_path / "cib.xml")
    if then == "saved":
        fixture = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker" / "cib_with_resources.xml"
        (tmp_path / "cib.xml").write_text(fixture.read_text())
    node = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    if then == "cannot observe":
        with pytest.raises(ApplyError, match="the CIB cannot be read on lb1 \\(Timed out after 15s\\)"):
            rec.observe(node)
    elif then == "saved":
        assert "db" in rec.observe(node)[RESOURCE]
    else:
        assert rec.observe(node) == {RESOURCE: {}, CONFIG: {}}
