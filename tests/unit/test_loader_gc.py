"""A large loaded tree lives for a whole run: the loader puts it in the collector's
permanent generation, so that the full collections its objects bring on do not walk all of
them again (bench/bench_plan.py measures the effect). What a load froze is handed back and
collected at the next load, so an agent that loads one tree per revision keeps neither old
trees nor garbage that was frozen with them. A small tree is not frozen."""
from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from controller import loader
from controller.loader import load_tree

BACKENDS = "---\n".join(
    f"apiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: be-{i}}}\nspec:\n  nodes: [lb1]\n"
    f"  servers: [{{name: s0, address: 192.0.2.{i + 1}, port: 80}}]\n" for i in range(20))


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def small_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "FREEZE_AT", 20)  # the test tree counts as large


def test_a_large_loaded_tree_is_not_walked_by_later_collections(tmp_path: Path, small_freeze: None) -> None:
    (tmp_path / "backends.yaml").write_text(BACKENDS)
    tree = load_tree(tmp_path)
    manifest = tree.of_kind("Backend")[0]
    assert not any(o is manifest for o in gc.get_objects())  # the permanent generation is not listed


def test_a_small_tree_is_not_frozen(tmp_path: Path) -> None:
    (tmp_path / "backends.yaml").write_text(BACKENDS)
    tree = load_tree(tmp_path)
    manifest = tree.of_kind("Backend")[0]
    assert gc.get_freeze_count() == 0
    assert any(o is manifest for o in gc.get_objects())


def test_garbage_frozen_by_one_load_is_collected_at_the_next(tmp_path: Path, small_freeze: None) -> None:
    (tmp_path / "backends.yaml").write_text(BACKENDS)
    enabled = gc.isenabled()
    gc.disable()  # only the loader may collect here
    try:
        garbage = Cycle()
        gone = weakref.ref(garbage)
        del garbage
        load_tree(tmp_path)  # freezes the unreachable cycle with everything else alive
        load_tree(tmp_path)
        assert gone() is None
    finally:
        if enabled:
            gc.enable()
