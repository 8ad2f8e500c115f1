"""Load and validate a whole tree of manifests at one revision.

Every `*.yaml` / `*.yml` file below the root, several documents per file, any folder depth
(hidden folders such as `.git` are skipped). Each document is parsed with its line numbers
kept per field, validated by its kind's pydantic model, and then the whole tree is checked:
unique names, references, exclusive claims per node, and each kind's own tree checks.

Nothing is applied from a tree with any problem: `load_tree` raises `TreeError` with every
problem found, each naming file, line and field.
"""
from __future__ import annotations

import gc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from schemas import KINDS, Manifest
from schemas.common import pattern_help

try:  # libyaml makes loading 10,000 objects several times faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

_SECRET_WORDS = ("password", "authkey", "secret")
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the tree, for people: where it is and what to do."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


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


# --- YAML with line numbers -------------------------------------------------------------

_constructor = yaml.constructor.SafeConstructor()
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"
_BOOL, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"


class _DocError(Exception):
    def __init__(self, line: int, field: str, message: str):
        self.line, self.field, self.message = line, field, message


def _to_data(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _DocError(key_node.start_mark.line + 1, _show(path), "YAML merge keys (<<) are not supported")
            key = _to_data(key_node, path + ("<key>",), {})
            if not isinstance(key, (str, int)):
                raise _DocError(key_node.start_mark.line + 1, _show(path), "mapping keys must be strings")
            if key in out:
                raise _DocError(key_node.start_mark.line + 1, _show(path + (key,)), f"duplicate key {key!r}")
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, path + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, path + (i,), lines) for i, item in enumerate(node.value)]
    tag, value = node.tag, node.value
    if tag == _STR:
        return value
    if tag == _INT and value.lstrip("-+").isdigit() and not value.lstrip("-+").startswith("0"):
        return int(value)  # the common case, without PyYAML's slower constructor
    if tag == _BOOL:
        low = value.lower()
        return value if low not in ("true", "false") else low == "true"  # yes/no/on/off stay strings
    if tag == _NULL:
        return None
    if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
        return value
    return _constructor.construct_object(node, deep=True)


def _documents(text: str) -> Iterable[tuple[int, Any, dict[Path_, int]]]:
    for node in yaml.compose_all(text, Loader=_Loader):
        if node is None:
            continue
        lines: dict[Path_, int] = {}
        yield node.start_mark.line + 1, _to_data(node, (), lines), lines


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
        return [Problem(source.file, source.line_of(("kind",)), "kind",
                        f"unknown kind {kind!r} (known: {', '.join(KINDS)})")]
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
        self._nodes_cache: dict[int, frozenset[str] | None] = {}

    # TreeView, for the schemas' whole-tree checks
    def get(self, kind: str, name: str) -> Manifest | None:
        item = self._by_key.get((kind, name))
        return item.manifest if item else None

    def of_kind(self, kind: str) -> list[Manifest]:
        return [i.manifest for i in self._by_kind.get(kind, [])]

    def loaded(self, kind: str) -> list[Loaded]:
        return self._by_kind.get(kind, [])

    def node_address(self, node: str) -> str | None:
        return self._node_address.get(node)

    @property
    def known_nodes(self) -> frozenset[str]:
        return frozenset(self._node_address)

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
        if p is None or (p.cluster is None and p.nodes is None and p.node is None):
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


def _read_revision(root: Path, digest: str) -> str:
    """The git commit of the checkout holding `root` (read from .git, no subprocess)."""
    for d in [root, *root.parents]:
        git = d / ".git"
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if head.startswith("ref: "):
                    ref = head[5:]
                    ref_file = git / ref
                    if ref_file.exists():
                        return ref_file.read_text().strip()
                    packed = git / "packed-refs"
                    if packed.exists():
                        for line in packed.read_text().splitlines():
                            if line.endswith(" " + ref):
                                return line.split()[0]
                    return f"sha256:{digest[:12]}"
                return head
            except OSError:
                break
    return f"sha256:{digest[:12]}"


def manifest_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix in (".yaml", ".yml") and path.is_file():
            files.append(path)
    return files


def load_tree(root: Path | str) -> Tree:
    """Load, validate and cross-check every manifest below `root`. Raises TreeError."""
    # Loading allocates many small objects and makes no reference cycles: the cyclic
    # collector's passes over the growing heap were a fifth of the time at 10,000 objects.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_tree(Path(root).resolve())
    finally:
        if enabled:
            gc.enable()


def _load_tree(root: Path) -> Tree:
    if not root.is_dir():
        raise TreeError([Problem(str(root), 0, "", "not a folder (give --repo a folder of manifests)")])
    problems: list[Problem] = []
    items: list[Loaded] = []
    digest = hashlib.sha256()
    for path in manifest_files(root):
        rel = str(path.relative_to(root))
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(rel, 0, "", f"cannot read: {err}"))
            continue
        digest.update(rel.encode() + b"\0" + raw + b"\0")
        try:
            for line, data, lines in _documents(text):
                source = Source(rel, line, lines)
                result = parse_document(data, source)
                if isinstance(result, list):
                    problems.extend(result)
                else:
                    items.append(Loaded(result, source))
        except _DocError as err:
            problems.append(Problem(rel, err.line, err.field, err.message))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            what = getattr(err, "problem", None) or str(err)
            problems.append(Problem(rel, mark.line + 1 if mark else 0, "", f"invalid YAML: {what}"))
    tree = Tree(root, items, _read_revision(root, digest.hexdigest()), digest.hexdigest())
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
            for i, node in enumerate(p.nodes or []):
                if known and node not in known:
                    at(item, f"spec.nodes.{i}", f"unknown node {node!r} (not in any Cluster)")
            if p.node is not None and known and p.node not in known:
                at(item, "spec.node", f"unknown node {p.node!r} (not in any Cluster)")
        for kinds, name, field_path in item.manifest.references():
            if not any(tree.get(k, name) is not None for k in kinds.split("|")):
                at(item, field_path, f"unknown {kinds.replace('|', ' or ')} {name!r}")

    claimed: dict[str, list[tuple[Loaded, str, frozenset[str] | None]]] = {}
    for item in tree.items:
        nodes = tree.placement_nodes(item.manifest)
        for key, field_path in item.manifest.claims():
            for other, other_field, other_nodes in claimed.get(key, []):
                if other is item:
                    continue
                common = nodes is None or other_nodes is None or bool(nodes & other_nodes)
                if common:
                    what = key.split(":", 1)
                    at(item, field_path, f"conflicts with {other.kind} {other.name!r} at "
                       f"{other.where(other_field)}: both claim {what[0]} {what[1] if len(what) > 1 else ''}".rstrip())
                    break
            claimed.setdefault(key, []).append((item, field_path, nodes))

    for item in tree.items:
        for field_path, message in item.manifest.check(tree):
            at(item, field_path, message)
    return problems
