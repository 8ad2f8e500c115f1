"""The agent under faults (issue 21): a refused revision never replaces the last good one,
which is kept across restarts and enforced at start-up; the agent outlives a damaged or
full state folder and a deleted or damaged repository, and says what is wrong.

Real git repositories, a real mirror and state folder; the node's state is JSON files
managed by the reconcilers of tests/unit/test_agent.py.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from controller.agent import Agent
from controller.source import GitSource, SourceError
from controller.state import read_json
from tests.unit.test_agent import StoreBackends, backend, cycle, env, git  # noqa: F401  (env: the fixture)


def mass_delete(agent_env) -> str:
    return agent_env.repo.commit({"lb.yaml": None}, "delete every manifest")


def test_a_refused_mass_prune_never_replaces_the_last_good_revision(env):
    good = env.repo.commit({"lb.yaml": backend("a") + "---\n" + backend("b") + "---\n" + backend("c")})
    agent = env.agent()
    cycle(agent, "startup")
    empty = mass_delete(env)
    cycle(agent, "commit")
    assert set(env.files()) == {"backend-a", "backend-b", "backend-c"}  # nothing pruned
    status = env.status()
    assert status["revision"] == good and status["latestRevision"] == empty and not status["ready"]
    assert status["reason"] == "PruneRefused" and "--allow-mass-prune" in status["message"]
    assert f"{good[:12]} stays applied" in status["message"]
    assert read_json(env.state / "applied.json", {})["revision"] == good
    # drift is still corrected against the good revision, not the empty one
    (env.store / "backend-b.json").unlink()
    cycle(agent, "drift")
    assert set(env.files()) == {"backend-a", "backend-b", "backend-c"}
    assert env.status()["revision"] == good


def test_a_restarted_agent_enforces_the_last_good_revision_at_once_while_the_newest_is_refused(env):
    good = env.repo.commit({"lb.yaml": backend("a") + "---\n" + backend("b") + "---\n" + backend("c")})
    agent = env.agent()
    cycle(agent, "startup")
    mass_delete(env)
    cycle(agent, "commit")
    env.stop()
    (env.store / "backend-a.json").unlink()  # drift while the agent is down
    agent = env.agent()
    cycle(agent, "startup")  # the first cycle, not the next resync
    assert set(env.files()) == {"backend-a", "backend-b", "backend-c"}
    status = env.status()
    assert status["revision"] == good and status["reason"] == "PruneRefused"
    assert status["lastRun"]["result"] == "converged"


def test_a_restarted_agent_enforces_the_last_good_revision_while_the_newest_fails_native_validation(env):
    good = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    env.repo.commit({"lb.yaml": backend("app", StoreBackends.invalid)})
    env.stop()
    (env.store / "backend-app.json").unlink()
    agent = env.agent()
    cycle(agent, "startup")
    assert env.files()["backend-app"]["balance"] == "roundrobin"
    assert env.status()["revision"] == good and env.status()["reason"] == "ValidationFailed"


def test_a_damaged_applied_file_is_said_and_the_newest_valid_commit_is_applied(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    env.stop()
    (env.state / "applied.json").write_text("[1, 2]")
    agent = env.agent()
    assert "applied.json: is damaged: a JSON object expected" in agent.error
    latest = env.repo.commit({"lb.yaml": backend("app", "leastconn")})
    cycle(agent, "startup")
    assert env.files()["backend-app"]["balance"] == "leastconn"
    assert read_json(env.state / "applied.json", {})["revision"] == latest  # written again


def test_a_damaged_inventory_fails_the_run_the_agent_lives_on_and_recovers_when_it_is_fixed(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    inventory = (env.state / "inventory.json").read_text()
    (env.state / "inventory.json").write_text("null")
    env.repo.commit({"lb.yaml": backend("app", "leastconn")})
    cycle(agent, "commit")
    assert env.files()["backend-app"]["balance"] == "roundrobin"  # nothing changed
    status = env.status()
    assert not status["ready"] and "inventory.json: is damaged: a JSON object expected, found null" in status["message"]
    (env.state / "inventory.json").write_text(inventory)
    cycle(agent, "resync")
    assert env.files()["backend-app"]["balance"] == "leastconn" and env.status()["ready"]


def test_a_cycle_that_raises_does_not_end_the_agent(env, monkeypatch):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.start()
    real = Agent.cycle
    broken = [True]

    def cycle_(self, reasons):
        if broken:
            raise OSError(28, "No space left on device", "/var/lib/reconcile/source/revisions/x")
        return real(self, reasons)

    monkeypatch.setattr(Agent, "cycle", cycle_)
    agent.triggers.put("signal", "SIGHUP")
    from tests.unit.test_agent import wait_for

    wait_for(lambda: env.status().get("reason") == "AgentError", what="the error in the status")
    assert "No space left on device: '/var/lib/reconcile/source/revisions/x'" in env.status()["message"]
    broken.clear()
    agent.triggers.put("signal", "SIGHUP")
    wait_for(lambda: env.status().get("ready"), what="the next cycle to work")


# --- hostile histories --------------------------------------------------------------------------


def test_a_burst_of_a_thousand_commits_is_applied_once_at_its_last_commit(env, tmp_path):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.start()
    runs = agent.runs
    stream = []  # one `git commit` each would take a minute: one fast-import stream instead
    head = git(env.repo.path, "rev-parse", "HEAD")
    for i in range(1, 1001):
        body = backend("app", "leastconn" if i % 2 else "roundrobin").replace("s1", f"s{i}")
        stream.append(f"commit refs/heads/main\ncommitter T <t@example.test> {1700000000 + i} +0000\n"
                      f"data 7\ncommit\n{'from ' + head if i == 1 else ''}\n"
                      f"M 100644 inline lb.yaml\ndata {len(body.encode())}\n{body}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=env.repo.path, input="".join(stream), text=True, check=True)
    last = git(env.repo.path, "rev-parse", "main")
    from tests.unit.test_agent import wait_for

    wait_for(lambda: env.status().get("revision") == last and env.status().get("ready"), timeout=30,
             what="the last commit of the burst")
    assert env.files()["backend-app"]["servers"] == ["s1000"]
    assert agent.runs - runs <= 3, f"{agent.runs - runs} runs for one burst"


def test_a_deleted_repository_is_named_at_once_and_followed_again_when_it_is_back(env, tmp_path):
    good = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.start()
    from tests.unit.test_agent import wait_for

    wait_for(lambda: env.status().get("revision") == good, what="the first commit")
    saved = tmp_path / "saved"
    shutil.move(env.repo.path, saved)
    wait_for(lambda: "the repository is gone" in (env.status().get("message") or ""), timeout=10,
             what="the deletion to be noticed without waiting for the resync")
    status = env.status()
    assert status["reason"] == "GitOperationFailed" and f"{good[:12]} stays applied" in status["message"]
    (env.store / "backend-app.json").unlink()  # drift meanwhile: the last good revision is still enforced
    agent.triggers.put("drift", "test")
    wait_for(lambda: "backend-app" in env.files(), what="drift corrected while the repository is gone")
    shutil.move(saved, env.repo.path)
    newer = env.repo.commit({"lb.yaml": backend("app", "leastconn")})
    agent.triggers.put("signal", "SIGHUP")
    wait_for(lambda: env.status().get("revision") == newer and env.status().get("ready"), what="followed again")


def test_a_damaged_repository_is_said_to_be_damaged(env, tmp_path):
    env.repo.commit({"lb.yaml": backend("app")})
    source = GitSource(str(env.repo.path), tmp_path / "state2")
    source.open()
    (env.repo.path / ".git" / "HEAD").write_bytes(b"\x00garbage\x1b[2J")
    with pytest.raises(SourceError) as err:
        source.head()
    message = str(err.value)
    assert "\x00" not in message and "\x1b" not in message
    assert str(env.repo.path) in message


def test_a_damaged_mirror_is_cloned_again(env, tmp_path, caplog):
    first = env.repo.commit({"lb.yaml": backend("app")})
    source = GitSource(str(env.repo.path), tmp_path / "state2")
    source.open()
    assert source.sync() == first
    for pack in (source.mirror_path / "objects").rglob("*"):  # the agent's own copy loses its objects
        if pack.is_file():
            pack.unlink()  # (unlinked, not emptied: a local clone shares them by hard links)
    revision = source.export(first)  # its objects are gone: the mirror is cloned again
    assert "roundrobin" in (revision.root / "lb.yaml").read_text()
    second = env.repo.commit({"lb.yaml": backend("app", "leastconn")})
    assert source.sync() == second
    assert "leastconn" in (source.export(second).root / "lb.yaml").read_text()
    assert "is damaged" in caplog.text and "cloning it again" in caplog.text
