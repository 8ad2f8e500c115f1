"""A fact about a tool's binary (keepalived's JSON dump signal number) is asked once per
build of the tool on a node and remembered in the state folder: a plan does not start
keepalived to learn a number that only another build changes. A dry-run writes nothing."""
from __future__ import annotations

from pathlib import Path

from reconcilers import files
from reconcilers.base import Node, Runner, tool_fact


def asker(node: Node, asked: list[str]):
    def ask() -> str:
        asked.append("asked")
        return node.run(["sh", "-c", "echo 36"], read_only=True).stdout.strip()
    return ask


def test_a_fact_is_asked_once_per_build_and_only_a_run_that_may_change_the_node_records_it(tmp_path: Path,
                                                                                           monkeypatch) -> None:
    asked: list[str] = []
    plan = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    apply = Node("lb1", Runner(), tmp_path / "state")
    assert tool_fact(plan, "sh", "--signum=JSON", asker(plan, asked)) == "36"
    assert not (tmp_path / "state").exists()
    assert tool_fact(apply, "sh", "--signum=JSON", asker(apply, asked)) == "36"
    assert tool_fact(plan, "sh", "--signum=JSON", asker(plan, asked)) == "36"
    assert asked == ["asked", "asked"]  # the plan after the apply did not ask
    monkeypatch.setattr(files, "_binary_version", lambda tool: "/usr/bin/sh:another build")
    assert tool_fact(plan, "sh", "--signum=JSON", asker(plan, asked)) == "36"
    assert len(asked) == 3


def test_a_record_cut_short_is_asked_again(tmp_path: Path) -> None:
    asked: list[str] = []
    apply = Node("lb1", Runner(), tmp_path / "state")
    tool_fact(apply, "sh", "--signum=JSON", asker(apply, asked))
    [record] = list((tmp_path / "state" / "cache" / "facts").iterdir())
    record.write_text("3")  # killed while writing "36\n"
    assert tool_fact(apply, "sh", "--signum=JSON", asker(apply, asked)) == "36"
    assert len(asked) == 2 and record.read_text() == "36\n"
