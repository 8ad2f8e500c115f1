"""Load and validate a whole tree of manifests at one revision.

Every `*.yaml` / `*.yml` file below the root, several documents per file, any folder depth
(hidden files and folders such as `.git` are skipped). Each document is parsed with its line
numbers kept per field (controller/yaml_lines.py), validated by its kind's pydantic model,
and then the whole tree is checked: unique names, references, exclusive claims per node, and
each kind's own tree checks.

Nothing is applied from a tree with any problem: `load_tree` raises `TreeError` with every
problem found, each naming file, line and field, on one line (file names and fields are
printed with control characters escaped, so no name can forge a problem line).

The input is hostile until proven otherwise (anyone with commit access writes it, every
node's agent reads it as root), so it is bounded before it is expanded:

    tree_files       8 MiB a file and 64 MiB in all (checked before a file is read),
                     20,000 manifest files, 200,000 folder entries looked at; links only
                     inside the repository; unreadable folders and files are errors
    yaml_lines       nesting 64 deep, 200,000 nodes a document, plain tags only
    MAX_TREE_NODES   2,000,000 YAML nodes in the tree, aliases counted as what they name

A repository of 10,000 Backends with 5 servers each is 0.8 million nodes and 4.7 MB
(bench/bench_plan.py). A load keeps about 200 bytes per node of valid manifests, so the
node limit also bounds a load's memory: about 0.5 GB at worst (bench/bench_loader.py).
A problem with no better place (a file that cannot be read) is at line 1 of its file;
only a folder, which has no lines, is named without one.
"""
from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from pydantic import ValidationError

from controller import tree_files
from controller.tree_cache import TreeCache
from controller.tree_files import escape
from controller.yaml_lines import Budget, OverBudget, Path_, YamlProblem, documents
from schemas import KINDS, Manifest
from schemas.common import NOT_ECHOED, pattern_help

MAX_TREE_NODES = 2_000_000
FREEZE_AT = 1_000
"""Manifests from which a loaded tree goes to the collector's permanent generation (load_tree)."""

T = TypeVar("T")
_SECRET_WORDS = ("password", "authkey", "secret")
_MAX_SHOWN = 400  # characters of a message or field in one problem line


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the tree, for people: where it is and what to do."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {_clip(self.field)}: {_clip(self.message)}" if self.field \
            else f"{where}: {_clip(self.message)}"
        return text if text.isprintable() else escape(text, backslash=False)


def _clip(text: str) -> str:
    """At most _MAX_SHOWN characters, cut in the middle: a message quotes the value first
    and says what is wrong with it at the end."""
    half = _MAX_SHOWN // 2
    return text if len(text) <= _MAX_SHOWN else f"{text[:half]}…{text[-half:]}"


class TreeError(Exception):
    """The tree is invalid; `problems` says every place why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class Source:
    file: str
    line: int
    lines: dict[Path_, int] = field(repr=False, default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of the deepest part of `path` that the document has."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return self.line


@dataclass
class Loaded:
    manifest: Manifest
    source: Source

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    def where(self, field_path: str = "") -> str:
        return f"{self.source.file}:{self.source.line_of(_split(field_path))}"


def _split(field_path: str) -> Path_:
    return tuple(int(p) if p.isdigit() else p for p in field_path.split(".") if p)


def _show(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- one document -----------------------------------------------------------------------


def _pydantic_problems(err: ValidationError, source: Source) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        # validators ("function-…") and a tagged union's branch ("(mapping)") are not fields
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p.startswith("function-")
                                                                          or (p[:1] == "(" and p[-1:] == ")"))))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        secret = any(w in str(p).lower() for p in loc for w in _SECRET_WORDS)
        value = e.get("input")
        if e["type"] == "string_pattern_mismatch":
            msg = pattern_help(e.get("ctx", {}).get("pattern", "")) or msg
        if NOT_ECHOED in msg:  # a validator saw what may be an inline secret
            secret = True
        if "SecretRef" in msg:
            msg = "a secret is given by reference only: {file: /absolute/path} or {env: NAME}, never inline"
            secret = True
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here; check the spelling or the kind's schema)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif not secret and isinstance(value, (str, int, float)) and not isinstance(value, bool) \
                and len(str(value)) <= 80 and e["type"] not in ("model_type", "dict_type") and repr(value) not in msg:
            msg = f"{msg} (got {value!r})"
        problems.append(Problem(source.file, source.line_of(loc), _show(loc), msg))
    return problems


def parse_document(data: Any, source: Source) -> Manifest | list[Problem]:
    if not isinstance(data, dict):
        return [Problem(source.file, source.line, "", "a manifest must be a mapping with apiVersion, kind, metadata, spec")]
    kind = data.get("kind")
    if kind is None:
        return [Problem(source.file, source.line, "kind", "required field is missing")]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:60] + "…"
        return [Problem(source.file, source.line_of(("kind",)), "kind",
                        f"unknown kind {shown} (known: {', '.join(KINDS)})")]
    try:
        return model.model_validate(data)
    except ValidationError as err:
        return _pydantic_problems(err, source)


# --- the whole tree ---------------------------------------------------------------------


class Tree:
    """Every valid manifest of one revision, with the node placement resolved."""

    def __init__(self, root: Path, items: list[Loaded], revision: str, digest: str = ""):
        self.root = root
        self.items = items
        self.revision = revision
        self.digest = digest  # sha256 of every manifest file's path and content
        self.from_cache = False  # validated by an earlier load of the same bytes (tree_cache)
        self._by_key = {(i.kind, i.name): i for i in items}
        self._by_kind: dict[str, list[Loaded]] = {}
        for item in items:
            self._by_kind.setdefault(item.kind, []).append(item)
        self._members: dict[str, dict[str, str]] = {}  # cluster → node → address
        self._node_address: dict[str, str] = {}
        for c in self._by_kind.get("Cluster", []):
            nodes = {n.name: n.address for n in c.manifest.spec.nodes}
            self._members[c.name] = nodes
            for n, a in nodes.items():
                self._node_address.setdefault(n, a)
        self._known = frozenset(self._node_address)
        self._of_kind = {kind: [i.manifest for i in loaded] for kind, loaded in self._by_kind.items()}
        self._nodes_cache: dict[int, frozenset[str] | None] = {}
        self._memo: dict[Callable[[Any], Any], Any] = {}

    # TreeView, for the schemas' whole-tree checks
    def get(self, kind: str, name: str) -> Manifest | None:
        item = self._by_key.get((kind, name))
        return item.manifest if item else None

    def of_kind(self, kind: str) -> list[Manifest]:
        """The manifests of one kind in tree order (one shared list: do not modify it)."""
        return self._of_kind.get(kind, [])

    def memo(self, build: Callable[["Tree"], T]) -> T:
        """`build(tree)`, computed once per tree: the index a whole-tree check looks things up
        in (by address, interface, port, …), so that checking every manifest stays linear."""
        if build not in self._memo:
            self._memo[build] = build(self)
        return self._memo[build]

    def loaded(self, kind: str) -> list[Loaded]:
        return self._by_kind.get(kind, [])

    def node_address(self, node: str) -> str | None:
        return self._node_address.get(node)

    @property
    def known_nodes(self) -> frozenset[str]:
        return self._known

    @property
    def named_nodes(self) -> frozenset[str]:
        """Every node the tree names: the Clusters' members and explicit placements."""
        named = set(self._node_address)
        for item in self.items:
            p = item.manifest.placement()
            if p is not None and not p.everywhere:
                named.update(p.nodes or [])
                named.update([p.node] if p.node else [])
        return frozenset(named)

    def everywhere(self) -> list[Loaded]:
        """Manifests placed on every node (`nodes: ["*"]`): they land on any machine."""
        return [i for i in self.items if self.placement_nodes(i.manifest) is None and i.kind != "Cluster"]

    def cluster_nodes(self, cluster: str) -> dict[str, str]:
        """Node name → address with prefix, in the Cluster's order."""
        return dict(self._members.get(cluster, {}))

    def placement_nodes(self, manifest: Manifest) -> frozenset[str] | None:
        """The nodes a manifest lands on; None means every node."""
        key = id(manifest)
        if key not in self._nodes_cache:
            self._nodes_cache[key] = self._resolve(manifest)
        return self._nodes_cache[key]

    def _resolve(self, manifest: Manifest) -> frozenset[str] | None:
        if manifest.kind == "Cluster":
            return frozenset(n.name for n in manifest.spec.nodes)
        p = manifest.placement()
        if p is None or p.everywhere:
            return None
        if p.cluster is not None:
            return frozenset(self._members.get(p.cluster, {}))
        return frozenset(p.nodes if p.nodes is not None else [p.node])

    def nodes_of(self, manifest: Manifest) -> frozenset[str]:
        nodes = self.placement_nodes(manifest)
        return self.known_nodes if nodes is None else nodes

    def on_node(self, kind: str, node: str) -> list[Manifest]:
        """The manifests of one kind that land on `node`."""
        out = []
        for item in self._by_kind.get(kind, []):
            nodes = self.placement_nodes(item.manifest)
            if nodes is None or node in nodes:
                out.append(item.manifest)
        return out

    def for_node(self, node: str) -> list[Loaded]:
        """The manifests that land on `node`."""
        out = []
        for item in self.items:
            nodes = self.placement_nodes(item.manifest)
            if nodes is None or node in nodes:
                out.append(item)
        return out


def manifest_files(root: Path) -> list[Path]:
    """Every manifest file below `root` (see tree_files.walk); TreeError if one cannot be read."""
    files, problems = tree_files.walk(Path(root).resolve())
    if problems:
        raise TreeError([Problem(*p) for p in problems])
    return files


def load_tree(root: Path | str, cache: TreeCache | None = None) -> Tree:
    """Load, validate and cross-check every manifest below `root`. Raises TreeError.
    With `cache`, a tree this code validated before (the same bytes) is taken from there
    (controller/tree_cache.py: storing one is the caller's, `cache.put(tree)`)."""
    # Loading allocates many small objects and makes no reference cycles: the cyclic
    # collector's passes over the growing heap were a fifth of the time at 10,000 objects.
    enabled = gc.isenabled()
    gc.disable()
    # What an earlier load froze (below) goes back to the collector, and is collected once
    # here: the permanent generation also holds whatever was alive then, garbage cycles
    # included, and an agent loads a tree per revision.
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    try:
        tree = _load_tree(Path(root).resolve(), cache)
        # A large tree lives for the whole run and has no cycles: in the collector's
        # permanent generation, the full collection its objects bring on, and every later
        # one (an agent re-plans the same tree on each drift event), does not walk them
        # all again (0.15-0.3 s at 10,000 objects). A small tree is not worth the collection
        # above at the next load.
        if len(tree.items) >= FREEZE_AT:
            gc.freeze()
        return tree
    finally:
        if enabled:
            gc.enable()


def _load_tree(root: Path, cache: TreeCache | None = None) -> Tree:
    if not root.is_dir():
        raise TreeError([Problem(str(root), 0, "", "not a folder (give --repo a folder of manifests)")])
    # The git revision (two git commands) is asked meanwhile: it needs no file read here.
    from controller.revision import git_revision
    from reconcilers.base import Background

    git = Background(lambda: git_revision(root))
    files, found = tree_files.walk(root)
    problems = [Problem(*p) for p in found]
    # Every file is read (and the tree's digest made) before any is parsed: the digest is
    # the cache's key, and what is parsed is exactly what was digested.
    read: list[tuple[str, str] | Problem | None] = []  # in file order: (name, text), or why it was not read
    digest = hashlib.sha256()
    bytes_left = tree_files.MAX_TREE_BYTES
    for path in files:
        name = tree_files.shown_name(root, path)
        try:
            raw = tree_files.read(path, bytes_left)
        except tree_files.Unread as err:
            read.append(Problem(name, 1, "", str(err)))
            if err.stop:
                break
            continue
        bytes_left -= len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[:err.start].count(b"\n") + 1
            read.append(Problem(name, line, "", f"not UTF-8 text (byte {raw[err.start]:#04x})"))
            continue
        digest.update(os.fsencode(path.relative_to(root)) + b"\0" + raw + b"\0")
        read.append((name, text))
    hexdigest = digest.hexdigest()
    if cache is not None and not problems and not any(isinstance(r, Problem) for r in read):
        cached = cache.get(hexdigest)
        if isinstance(cached, list) and all(isinstance(i, Loaded) for i in cached):
            tree = Tree(root, cached, git.wait() or f"sha256:{hexdigest[:12]}", hexdigest)
            tree.from_cache = True
            return tree
    items: list[Loaded] = []
    budget = Budget(MAX_TREE_NODES)
    for i, entry in enumerate(read):
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        assert entry is not None
        name, text = entry
        read[i] = None  # being parsed: its text need not stay
        try:
            for line, data, lines in documents(text, budget):
                source = Source(name, line, lines)
                try:
                    result = parse_document(data, source)
                except Exception as err:  # a bug or a limit below the schemas: a problem, never a traceback
                    result = [Problem(name, line, "", f"cannot validate this document ({type(err).__name__})")]
                if isinstance(result, list):
                    problems.extend(result)
                else:
                    items.append(Loaded(result, source))
        except OverBudget as err:
            problems.append(Problem(name, err.line, "", err.message))
            break
        except YamlProblem as err:
            problems.append(Problem(name, err.line, _show(err.path), err.message))
    tree = Tree(root, items, git.wait() or f"sha256:{hexdigest[:12]}", hexdigest)
    problems.extend(check_tree(tree))
    if problems:
        raise TreeError(problems)
    return tree


def check_tree(tree: Tree) -> list[Problem]:
    """Names unique per kind, references resolve, no conflicting claims, kind checks."""
    problems: list[Problem] = []

    def at(item: Loaded, field_path: str, message: str) -> None:
        line = item.source.line_of(_split(field_path))
        problems.append(Problem(item.source.file, line, _show(_split(field_path)), message))

    seen: dict[tuple[str, str], Loaded] = {}
    for item in tree.items:
        first = seen.setdefault((item.kind, item.name), item)
        if first is not item:
            at(item, "metadata.name", f"duplicate {item.kind} name {item.name!r} (first at {first.where('metadata.name')})")

    known = tree.known_nodes
    for item in tree.items:
        p = item.manifest.placement()
        if p is not None:
            if p.cluster is not None and tree.get("Cluster", p.cluster) is None:
                at(item, "spec.cluster", f"unknown cluster {p.cluster!r}")
            for i, node in enumerate(p.nodes if p.nodes and not p.everywhere else []):
                if known and node not in known:
                    at(item, f"spec.nodes.{i}", f"unknown node {node!r} (not in any Cluster)")
            if p.node is not None and known and p.node not in known:
                at(item, "spec.node", f"unknown node {p.node!r} (not in any Cluster)")
        for kinds, name, field_path in item.manifest.references():
            if not any(tree.get(k, name) is not None for k in kinds.split("|")):
                at(item, field_path, f"unknown {kinds.replace('|', ' or ')} {name!r}")

    # Exclusive claims, indexed by key and node: the first claimant of a key on each node,
    # and the first claimant placed on every node (None), so that each claim is checked in
    # the time of its own nodes, not against every other claim of its key.
    first_on: dict[str, dict[str, tuple[int, Loaded, str]]] = {}
    first_everywhere: dict[str, tuple[int, Loaded, str]] = {}
    first_any: dict[str, tuple[int, Loaded, str]] = {}
    for order, item in enumerate(tree.items):
        nodes = tree.placement_nodes(item.manifest)
        for key, field_path in item.manifest.claims():
            on = first_on.setdefault(key, {})
            if nodes is None:
                candidates = [first_any.get(key)]
            else:
                candidates = [first_everywhere.get(key)] + [on.get(n) for n in nodes]
            found = [c for c in candidates if c is not None and c[1] is not item]
            if found:
                _, other, other_field = min(found, key=lambda c: c[0])
                what = key.split(":", 1)
                at(item, field_path, f"conflicts with {other.kind} {other.name!r} at "
                   f"{other.where(other_field)}: both claim {what[0]} {what[1] if len(what) > 1 else ''}".rstrip())
            claim = (order, item, field_path)
            first_any.setdefault(key, claim)
            if nodes is None:
                first_everywhere.setdefault(key, claim)
            else:
                for n in nodes:
                    on.setdefault(n, claim)

    for item in tree.items:
        for field_path, message in item.manifest.check(tree):
            at(item, field_path, message)
    return problems
