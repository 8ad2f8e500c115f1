"""A tree validated once is taken from the state folder's cache when the same bytes are
loaded again with the same code (controller/tree_cache.py): a CLI plan of an unchanged tree
builds no validator. A changed byte, changed code, or an entry someone else could have
written is a miss, never a stale verdict; a dry-run reads the cache and writes nothing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import loader, tree_cache
from controller.loader import TreeError, load_tree
from controller.tree_cache import TreeCache
from tests.unit.test_cli import ToolBackends, cli, host, repo  # noqa: F401  (fixtures)

BACKENDS = "---\n".join(
    f"apiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: be-{i}}}\nspec:\n  nodes: [lb1]\n"
    f"  servers: [{{name: s0, address: 192.0.2.{i + 1}, port: 80, weight: {i + 1}}}]\n" for i in range(5))


def shape(tree) -> list:
    return [(i.kind, i.name, i.manifest.model_dump(), i.source.file, i.source.line, i.source.lines)
            for i in tree.items]


@pytest.fixture
def tree_dir(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "team").mkdir(parents=True)
    (root / "team" / "backends.yaml").write_text(BACKENDS)
    return root


@pytest.fixture
def cache(tmp_path: Path) -> TreeCache:
    return TreeCache(tmp_path / "state")


def test_the_same_bytes_load_from_the_cache_as_they_validated(tree_dir: Path, cache: TreeCache) -> None:
    first = load_tree(tree_dir, cache)
    assert not first.from_cache
    cache.put(first)
    again = load_tree(tree_dir, cache)
    assert again.from_cache
    assert shape(again) == shape(first) and again.digest == first.digest and again.revision == first.revision
    assert again.on_node("Backend", "lb1")[2].spec.servers[0].weight == 3


def test_a_changed_byte_is_validated_again_and_its_problem_reported(tree_dir: Path, cache: TreeCache) -> None:
    cache.put(load_tree(tree_dir, cache))
    path = tree_dir / "team" / "backends.yaml"
    path.write_text(BACKENDS.replace("weight: 3", "weight: 3000"))  # out of HAProxy's range
    with pytest.raises(TreeError) as err:
        load_tree(tree_dir, cache)
    assert "team/backends.yaml" in str(err.value) and "weight" in str(err.value)
    path.write_text(BACKENDS.replace("weight: 3", "weight: 4"))
    changed = load_tree(tree_dir, cache)
    assert not changed.from_cache and changed.on_node("Backend", "lb1")[2].spec.servers[0].weight == 4


def test_a_moved_file_is_another_tree(tree_dir: Path, cache: TreeCache) -> None:
    cache.put(load_tree(tree_dir, cache))
    (tree_dir / "team" / "backends.yaml").rename(tree_dir / "backends.yaml")
    moved = load_tree(tree_dir, cache)
    assert not moved.from_cache and moved.items[0].source.file == "backends.yaml"


def test_other_validating_code_is_a_miss(tree_dir: Path, cache: TreeCache, monkeypatch) -> None:
    cache.put(load_tree(tree_dir, cache))
    monkeypatch.setattr(tree_cache, "_code_digest", "another build of the schemas")
    assert not load_tree(tree_dir, cache).from_cache


def test_the_code_digest_covers_every_schema_module_and_the_loader() -> None:
    covered = {p for p in tree_cache._CODE} | {f"schemas/{p.name}" for p in (tree_cache._ROOT / "schemas").glob("*.py")}
    assert {"controller/loader.py", "controller/yaml_lines.py", "controller/tree_files.py",
            "schemas/common.py", "schemas/backend.py"} <= covered


@pytest.mark.parametrize("spoil", ["group-writable", "someone-else", "damaged", "a-link"])
def test_an_entry_others_could_have_written_or_damaged_is_not_read(tree_dir: Path, cache: TreeCache, spoil: str,
                                                                   tmp_path: Path) -> None:
    cache.put(load_tree(tree_dir, cache))
    [entry] = list(cache.folder.iterdir())
    if spoil == "group-writable":
        entry.chmod(0o664)
    elif spoil == "someone-else":
        os.chown(entry, 4321, -1)
    elif spoil == "damaged":
        entry.write_bytes(entry.read_bytes()[:-20])
    else:
        target = tmp_path / "elsewhere"
        entry.rename(target)
        entry.symlink_to(target)
    again = load_tree(tree_dir, cache)
    assert not again.from_cache and shape(again) == shape(load_tree(tree_dir))


def test_at_most_keep_trees_are_kept(tmp_path: Path, cache: TreeCache, monkeypatch) -> None:
    monkeypatch.setattr(tree_cache, "KEEP", 2)
    root = tmp_path / "repo"
    root.mkdir()
    for i in range(4):
        (root / "b.yaml").write_text(BACKENDS.replace("weight: 1}", f"weight: {10 + i}}}"))
        tree = load_tree(root, cache)
        cache.put(tree)
        os.utime(next(cache.folder.iterdir()), (1000 + i, 1000 + i))  # oldest first, whatever the clock
    assert len(list(cache.folder.iterdir())) == 2
    assert load_tree(root, cache).from_cache  # the last one stays


def test_a_plan_reads_the_cache_and_writes_nothing_an_apply_stores_the_tree(repo: Path, host, capsys,  # noqa: F811
                                                                            monkeypatch) -> None:
    monkeypatch.setattr(ToolBackends, "validator", None)
    host("lb1")
    state = repo.parent / "state"
    assert cli(repo, "--dry-run") == 2
    assert not (state / "cache" / "tree").exists()
    assert cli(repo, "apply") == 0
    assert len(list((state / "cache" / "tree").iterdir())) == 1
    entry = next((state / "cache" / "tree").iterdir())
    before = entry.read_bytes()
    capsys.readouterr()
    parsed = []
    monkeypatch.setattr(loader, "parse_document", lambda *a: parsed.append(a))
    assert cli(repo, "--dry-run") == 0
    assert parsed == []  # nothing validated again
    assert "in-sync" in capsys.readouterr().out
    assert entry.read_bytes() == before and len(list(entry.parent.iterdir())) == 1
