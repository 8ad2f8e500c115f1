"""A plan looks at the node once: a read several reconcilers make (`shared=True`, such as
the same `systemctl show` or `crm_mon`) runs once for all of them, concurrent askers
included, health checks included. Outside a plan (apply, the agent's watch) and for reads
not marked shared, every call runs: what an apply changed is always read afresh."""
from __future__ import annotations

import threading

import pytest

import reconcilers
from controller.engine import Engine
from controller.loader import load_tree
from reconcilers.base import CommandError, Desired, Health, Node, Reconciler, Runner, Snapshot, unit_states
from tests.unit import json_kinds
from tests.unit.test_engine import backend, env, frontend  # noqa: F401  (fixture)

PID = ["sh", "-c", "sleep 0.1; echo $$"]  # another answer each time it runs


def test_within_one_look_concurrent_askers_share_one_run() -> None:
    runner = Runner(dry_run=True, recording=True)
    runner.snapshot = Snapshot()
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(runner.run(PID, read_only=True, shared=True).stdout))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(answers)) == 1 and len(answers) == 4
    assert [r.argv for r in runner.records] == [PID]


def test_reads_not_shared_or_outside_a_look_run_every_time() -> None:
    runner = Runner(dry_run=True)
    assert runner.run(PID, read_only=True, shared=True).stdout != runner.run(PID, read_only=True, shared=True).stdout
    runner.snapshot = Snapshot()
    assert runner.run(PID, read_only=True).stdout != runner.run(PID, read_only=True).stdout


def test_a_shared_failure_is_each_askers_own_check() -> None:
    runner = Runner(dry_run=True)
    runner.snapshot = Snapshot()
    assert runner.run(["false"], read_only=True, shared=True, check=False).rc == 1
    with pytest.raises(CommandError):
        runner.run(["false"], read_only=True, shared=True)


class Seen:
    pids: list[tuple[str, str]] = []


class PidBackends(Reconciler):
    """Backends that read a shared node-wide fact in observe and in health."""

    kind = "Backend"

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance}) for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        Seen.pids.append(("observe", node.run(PID, read_only=True, shared=True).stdout))
        return {self.kind: {}}

    def health(self, node, desired, observed):
        Seen.pids.append(("health", node.run(PID, read_only=True, shared=True).stdout))
        return {self.kind: {n: Health.healthy("Fine", "fine") for n in desired[self.kind]}}


class PidFrontends(json_kinds.JsonFrontends):
    def observe(self, node):
        Seen.pids.append(("observe", node.run(PID, read_only=True, shared=True).stdout))
        return super().observe(node)


def test_a_plan_reads_a_shared_fact_once_for_every_reconciler_and_health(env, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:PidBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:PidFrontends")
    monkeypatch.setattr(Seen, "pids", [])
    env.write(backend("app"), frontend("web", "app"))
    node = Node("lb1", Runner(dry_run=True), env.state)
    record = Engine(load_tree(env.repo), node).plan()
    assert record.health_checked
    assert sorted(w for w, _ in Seen.pids) == ["health", "observe", "observe"]
    [first] = {pid for _, pid in Seen.pids}
    assert node.runner.snapshot is None  # the look ended with the plan
    Seen.pids.clear()
    Engine(load_tree(env.repo), node).plan()  # another look: read again
    [second] = {pid for _, pid in Seen.pids}
    assert second != first


def test_after_an_apply_health_reads_afresh_and_once(env, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:PidBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:PidFrontends")
    monkeypatch.setattr(Seen, "pids", [])
    env.write(backend("app"), frontend("web", "app"))
    Engine(load_tree(env.repo), Node("lb1", Runner(), env.state)).apply()
    observed = [pid for what, pid in Seen.pids if what == "observe"]
    [health] = [pid for what, pid in Seen.pids if what == "health"]
    assert len(set(observed)) == len(observed)  # each observation of an apply's passes runs its read
    assert health not in observed


class EarlyBackends(PidBackends):
    """Backends whose health waits on something started by prepare_health."""

    events: list[tuple[str, str, bool]] = []

    def prepare_health(self, node):
        EarlyBackends.events.append(("prepare", threading.current_thread().name, node.runner.dry_run))
        self.started = threading.Event()
        self.started.set()

    def observe(self, node):
        EarlyBackends.events.append(("observe", threading.current_thread().name, node.runner.dry_run))
        return {self.kind: {}}

    def health(self, node, desired, observed):
        EarlyBackends.events.append(("health", threading.current_thread().name, self.started.is_set()))
        return {self.kind: {n: Health.healthy("Fine", "fine") for n in desired[self.kind]}}


def test_health_is_prepared_in_the_reconcilers_own_thread_before_it_observes(env, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:EarlyBackends")
    monkeypatch.setattr(EarlyBackends, "events", [])
    env.write(backend("app"), frontend("web", "app"))
    record = Engine(load_tree(env.repo), Node("lb1", Runner(dry_run=True), env.state)).plan()
    assert [o.health["status"] for o in record.objects if o.kind == "Backend"] == ["Healthy"]
    (prepare, thread, read_only), observe, health = EarlyBackends.events
    assert prepare == "prepare" and read_only and observe[:2] == ("observe", thread) and health[2] is True
    EarlyBackends.events.clear()
    Engine(load_tree(env.repo), Node("lb1", Runner(dry_run=True), env.state), health=False).plan()
    assert [e[0] for e in EarlyBackends.events] == ["observe"]  # no health, nothing prepared


class UnitBackends(PidBackends):
    """Backends whose observe and health ask systemd about their unit."""

    units = ("backend.service",)
    seen: list[str] = []

    def observe(self, node):
        UnitBackends.seen.append(unit_states(node, ["backend.service"])["backend.service"].active)
        return {self.kind: {}}

    def health(self, node, desired, observed):
        UnitBackends.seen.append(unit_states(node, ["backend.service"])["backend.service"].active)
        return {self.kind: {n: Health.healthy("Fine", "fine") for n in desired[self.kind]}}


class UnitFrontends(json_kinds.JsonFrontends):
    units = ("frontend.service", "backend.service")

    def observe(self, node):
        UnitBackends.seen.append(unit_states(node, ["frontend.service"])["frontend.service"].active)
        return super().observe(node)


def test_a_plan_asks_systemd_once_about_every_reconcilers_units(env, monkeypatch) -> None:  # noqa: F811
    import controller.engine
    from reconcilers import base, services

    asked: list[list[str]] = []

    def systemd(node, units):
        asked.append(list(units))
        return {u: base.UnitState(u, "loaded", "active", "enabled", "enabled") for u in units}

    monkeypatch.setattr(controller.engine, "read_units", systemd)
    monkeypatch.setattr(controller.engine, "systemd_running", lambda: True)
    monkeypatch.setattr(services, "read_units", lambda node, units: pytest.fail(f"systemctl asked again for {units}"))
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:UnitBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:UnitFrontends")
    monkeypatch.setattr(UnitBackends, "seen", [])
    env.write(backend("app"), frontend("web", "app"))
    Engine(load_tree(env.repo), Node("lb1", Runner(dry_run=True), env.state)).plan()
    assert asked == [["backend.service", "frontend.service"]]
    assert UnitBackends.seen == ["active"] * 3
