"""Seeded mutations of valid manifest trees, for the loader's fuzzing layer.

`make_tree(seed, root, outside)` writes one tree below `root`: a valid base tree (the
embedded desired-state/, a small tree of every placement, or a generated tree of groups,
binds and bridges), changed by one to four mutations chosen from the seed. Mutations work
on the data (a field deleted, a value of another type or a hostile string, a document
duplicated, a name reused) and on the text (lines deleted, swapped, re-indented; YAML
syntax, tags, anchors, alias bombs, deep nesting, control characters, bytes that are not
UTF-8, truncation) and on the files (hostile names, links out of the repository and into
it, named pipes, empty files, a file over the size limit). The same seed always writes the
same tree; `make_tree` returns the names of the mutations, to print with a failing seed.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET = "FUZZ-SECRET-MARKER-7c1e"  # the content of a file outside the tree: never in a problem

SMALL = {
    "cluster.yaml": """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  stonithEnabled: false
""",
    "net/vips.yaml": """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: web-vip
  labels: {tier: web}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  keepalived:
    routerId: 51
    priority: {lb1: 150, lb2: 100}
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: db-vip
spec:
  cluster: web
  manager: pacemaker
  address: 192.0.2.110/24
""",
    "lb/backends.yaml": """\
apiVersion: reconcile/v1
kind: Backend
metadata:
  name: app
spec:
  cluster: web
  healthCheck: {type: http, path: /, expectStatus: 200}
  servers:
    - {name: app1, address: 198.51.100.11, port: 80}
    - {name: app2, address: 198.51.100.12, port: 80, weight: 2}
""",
    "lb/deep/frontends.yaml": """\
apiVersion: reconcile/v1
kind: Frontend
metadata:
  name: web
spec:
  cluster: web
  bind:
    - {address: 192.0.2.100, port: 80}
  defaultBackend: app
  rules:
    - {path: /api, backend: app}
""",
    "containers.yaml": """\
apiVersion: reconcile/v1
kind: Container
metadata:
  name: ct1
spec:
  node: lb1
  template: busybox
  network: {type: bridge, bridge: app0, address: 198.51.100.21/24, bridgeAddress: 198.51.100.1/24}
  init: [/bin/httpd, -f, -p, "80"]
  files: {/www/index.html: "hello\\n"}
  limits: {memory: 64M, cpus: "0"}
  stopTimeout: 10s
""",
    "join.yaml": """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  nodes: [lb1, lb2]
  domain: corp.example.test
  password: {file: /etc/reconcile/secrets/join.password}
  sudoGroups: [domain admins]
""",
}


def many() -> dict[str, str]:
    """Groups of VIPs on several interfaces, frontends on VIPs and on 0.0.0.0, containers on
    shared bridges: the shapes the indexed whole-tree checks look up."""
    docs = [SMALL["cluster.yaml"].replace("stonithEnabled: false", "stack: none")]
    for i in range(12):
        group = f"\n    group: g{i % 3}" if i % 2 else ""
        docs.append(f"apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: v{i}\nspec:\n  cluster: web\n"
                    f"  manager: keepalived\n  address: 192.0.2.{100 + i}/24\n  interface: eth{i % 2}\n"
                    f"  keepalived:\n    routerId: {10 + (i if i % 2 == 0 else i % 3)}{group}\n")
    docs.append("apiVersion: reconcile/v1\nkind: Backend\nmetadata: {name: be}\nspec:\n  cluster: web\n")
    for i in range(8):
        bind = "0.0.0.0, port: 9000" if i == 7 else f"192.0.2.{100 + i}, port: {80 + i % 2}"
        docs.append(f"apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: f{i}}}\nspec:\n  cluster: web\n"
                    f"  bind: [{{address: {bind}}}]\n  defaultBackend: be\n")
    for i in range(6):
        docs.append(f"apiVersion: reconcile/v1\nkind: Container\nmetadata: {{name: c{i}}}\nspec:\n"
                    f"  node: lb{1 + i % 2}\n  template: busybox\n  network: {{type: bridge, bridge: br{i % 3 // 2}, "
                    f"address: 10.{i % 3 // 2}.0.{10 + i}/24, bridgeAddress: 10.{i % 3 // 2}.0.1/24}}\n")
    return {"all.yaml": "---\n".join(docs[:14]), "more/rest.yaml": "---\n".join(docs[14:])}


def bases() -> list[dict[str, str]]:
    embedded = {str(p.relative_to(REPO / "desired-state")): p.read_text()
                for p in sorted((REPO / "desired-state").rglob("*.yaml"))}
    return [embedded, SMALL, many()]


_BASES: list[dict[str, str]] | None = None

HOSTILE_STRINGS = [
    "", " ", "-", "--x", "-rf", "..", "../../etc/shadow", "/etc/../etc/shadow", "a\n", "a\nb: c", "a\r", "a\x00b",
    "a\x1b[31m", "a\u2028b", "a\u2029", "a\x85", "\ufeffa", "#", "a # b", ";", "a;reboot", "$(reboot)", "`id`",
    "${HOME}", "{}", "}", "{a", "[", "]", "'", '"', "\\", "%u", "%%", "<a/>", "]]>", "&amp;", "ALL=(ALL) NOPASSWD: ALL",
    "*", "!", "&a", "*a", "|", ">", "@", "?", ": ", "0x_", "0b_", "1e400", ".nan", "9" * 30, "9" * 5000,
    "9999999999999999999999h", "99999999999999999999ms", "-1s", "0s", "1.5m", "x" * 70, "x" * 70_000, "é", "\U0001f600",
    "/", "//", "/a/./b", "/a//b", "a b", "lxc.rootfs.path=dir:/etc", "yes", "no", "on", "null", "~", "true", "<<",
]
HOSTILE_VALUES: list[Any] = [
    0, -1, 1, 65535, 65536, 2**31, 2**63, 2**64 + 1, 10**30, -(10**30), 0.0, -0.5, 1e308, float("inf"), float("nan"),
    True, False, None, [], {}, [None], {"a": None}, [[[]]], {"file": "/etc/shadow"}, {"env": "HOME"},
]


def _lines(text: str) -> list[str]:
    return text.split("\n")


# --- data mutations (on a valid base, before the text is touched) -----------------------------

def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _parent(data: Any, path: tuple) -> tuple[Any, Any]:
    for part in path[:-1]:
        data = data[part]
    return data, path[-1]


def mutate_data(rng: random.Random, files: dict[str, str]) -> str:
    name = rng.choice(sorted(files))
    try:
        docs = [d for d in yaml.safe_load_all(files[name]) if d is not None]
    except yaml.YAMLError:
        return "data:skipped"
    if not docs:
        return "data:empty"
    doc_i = rng.randrange(len(docs))
    doc = docs[doc_i]
    paths = [p for p in _paths(doc) if p]
    action = rng.choice(["delete", "value", "value", "string", "string", "duplicate-doc", "rename", "unknown-field",
                         "list-item", "kind"])
    if action == "duplicate-doc":
        docs.append(docs[doc_i])
    elif action == "kind" and isinstance(doc, dict):
        doc["kind"] = rng.choice(["Backend", "Frontend", "VirtualIP", "Container", "Cluster", "ClusterResource",
                                  "DomainJoin", "Nope", 7, None])
    elif action == "rename" and isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        others = [d.get("metadata", {}).get("name") for d in docs if isinstance(d, dict)
                  and isinstance(d.get("metadata"), dict)]
        doc["metadata"]["name"] = rng.choice(others + HOSTILE_STRINGS[:20])
    elif action == "unknown-field" and isinstance(doc, dict):
        target = doc.get("spec") if isinstance(doc.get("spec"), dict) else doc
        target[rng.choice(["extra", "floating", "a\nb", "spec", "x" * 300])] = rng.choice(HOSTILE_VALUES)
    elif paths:
        parent, key = _parent(doc, rng.choice(paths))
        if action == "delete":
            del parent[key]
        elif action == "list-item" and isinstance(parent, list):
            parent.insert(key, parent[key])
        elif action == "string":
            parent[key] = rng.choice(HOSTILE_STRINGS)
        else:
            parent[key] = rng.choice(HOSTILE_VALUES)
    files[name] = yaml.safe_dump_all(docs, sort_keys=rng.random() < 0.3, allow_unicode=rng.random() < 0.5,
                                     default_flow_style=rng.choice([None, False, True]),
                                     width=rng.choice([80, 1_000_000]), explicit_start=rng.random() < 0.5)
    return f"data:{action}"


# --- text mutations ----------------------------------------------------------------------------

def _line_op(rng: random.Random, text: str) -> tuple[str, str]:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.choice(["delete", "duplicate", "swap", "indent", "dedent"])
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "indent":
        lines[i] = " " * rng.choice([1, 2, 4]) + lines[i]
    else:
        lines[i] = lines[i][rng.choice([1, 2]):]
    return "\n".join(lines), f"line:{op}"


YAML_BITS = ["[", "]", "{", "}", ":", ": ", ",", "- ", "-", "&a ", "*a", "!", "!!", "|", ">", "'", '"', "#", "%",
             "@", "`", "?", "? ", "\t", "\n", "---\n", "...\n", "<<: ", "\\", " ", "&", "*"]
CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\r", "\r\n", "\t", "\v",
           "\ufffe", "\ud800"]
TAGS = ["!!python/object/apply:os.system [id]", "!!python/name:os.system", "!!python/object:object {}", "!!set",
        "!!omap", "!!pairs", "!!binary", "!!timestamp", "!foo", "!!str", "!!int", "!!float", "!!bool", "!!null",
        "!!map", "!!seq", "!", "!<tag:example.com,2000:x>", "!!merge", "!!value"]


def _insert(rng: random.Random, text: str, bit: str) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + bit + text[at:]


def _value_spans(text: str) -> list[tuple[int, int]]:
    """Where the values of `key: value` lines are."""
    spans, pos = [], 0
    for line in _lines(text):
        colon = line.find(": ")
        if colon > 0 and line[colon + 2:].strip():
            spans.append((pos + colon + 2, pos + len(line)))
        pos += len(line) + 1
    return spans


def _replace_value(rng: random.Random, text: str, new: str) -> str:
    spans = _value_spans(text)
    if not spans:
        return _insert(rng, text, new)
    start, end = rng.choice(spans)
    return text[:start] + new + text[end:]


def alias_bomb(levels: int = 9) -> str:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels + 1):
        prev, cur = chr(96 + i), chr(97 + i)
        text += f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]\n"
    return text


def mutate_text(rng: random.Random, text: str) -> tuple[str, str]:
    op = rng.choice(["line", "line", "line", "yaml-bit", "yaml-bit", "control", "tag", "value", "value", "anchor",
                     "recursive-alias", "bomb", "deep", "truncate", "separator", "merge", "big-scalar", "dup-key",
                     "delete-chars"])
    if op == "line":
        return _line_op(rng, text)
    if op == "yaml-bit":
        return _insert(rng, text, rng.choice(YAML_BITS)), op
    if op == "control":
        return _insert(rng, text, rng.choice(CONTROL)), op
    if op == "tag":
        return _replace_value(rng, text, rng.choice(TAGS) + " " + rng.choice(["x", "[1]", "{a: 1}", "''", "12"])), op
    if op == "value":
        value = rng.choice(HOSTILE_STRINGS)
        quoted = rng.choice([value, repr(value), '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'])
        return _replace_value(rng, text, quoted), op
    if op == "anchor":
        spans = _value_spans(text)
        if len(spans) >= 2:
            (s1, _), (s2, e2) = sorted(rng.sample(spans, 2))
            return text[:s1] + "&fz " + text[s1:s2] + "*fz" + text[e2:], op
        return text, op
    if op == "recursive-alias":
        return _replace_value(rng, text, rng.choice(["&r [*r]", "&r {a: *r}", "*undefined", "&r\n  - *r"])), op
    if op == "bomb":
        bomb = alias_bomb(rng.randint(4, 9))
        return (text + "\n---\n" + bomb) if rng.random() < 0.5 else _replace_value(rng, text, "\n" + bomb), op
    if op == "deep":
        depth = rng.choice([10, 63, 64, 65, 200, 5000, 100_000])
        nested = "[" * depth + "]" * depth if rng.random() < 0.7 else "{a: " * depth + "}" * depth
        return _replace_value(rng, text, nested), op
    if op == "truncate":
        return text[:rng.randrange(len(text) + 1)], op
    if op == "separator":
        return _insert(rng, text, rng.choice(["\n---\n", "\n---\n---\n", "\n...\n", "\n--- |\n  x\n", "\n---"])), op
    if op == "merge":
        return _replace_value(rng, text, rng.choice(["{<<: {a: 1}}", "\n  <<: *fz", "<<"])), op
    if op == "big-scalar":
        return _replace_value(rng, text, "x" * rng.choice([10_000, 300_000])), op
    if op == "dup-key":
        lines = _lines(text)
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i + 1] + [lines[i]] + lines[i + 1:]), op
    start = rng.randrange(len(text) + 1)
    return text[:start] + text[start + rng.randint(1, 20):], op


# --- file mutations ----------------------------------------------------------------------------

HOSTILE_NAMES = ["new\nline.yaml", "esc\x1b[31mred.yaml", "x.yaml:1: all good.yaml", "tab\t.yaml", "cr\r.yaml",
                 "back\\slash.yaml", "sp ace.yaml", "-rf.yaml", "ü.yaml", "\u202ereversed.yaml", "nul\x7f.yaml"]


class Tree:
    """What make_tree writes: files (bytes names allowed), links, pipes, sparse files."""

    def __init__(self, files: dict[str, str]):
        self.files: dict[bytes, bytes] = {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in files.items()}
        self.links: dict[bytes, str] = {}
        self.pipes: list[bytes] = []
        self.sparse: dict[bytes, int] = {}

    def text(self, name: bytes) -> str:
        return self.files[name].decode("utf-8", "surrogateescape")


def mutate_files(rng: random.Random, tree: Tree, outside: Path) -> str:
    op = rng.choice(["rename", "rename", "link-out", "link-out-dir", "link-in", "link-dangling", "link-loop", "pipe",
                     "empty", "big", "bad-bytes", "deep-folder", "hidden"])
    name = rng.choice(sorted(tree.files))
    if op == "rename":
        new = rng.choice(HOSTILE_NAMES).encode() if rng.random() < 0.8 else b"caf\xe9\xff.yaml"
        tree.files[new] = tree.files.pop(name)
    elif op == "link-out":
        tree.links[b"leak.yaml"] = rng.choice([str(outside / "secret.yaml"), "/etc/shadow", "../outside/secret.yaml"])
    elif op == "link-out-dir":
        tree.links[b"linked"] = str(outside)
    elif op == "link-in":
        tree.links[b"again.yaml"] = name.decode("utf-8", "surrogateescape")
    elif op == "link-dangling":
        tree.links[b"gone.yaml"] = "nowhere.yaml"
    elif op == "link-loop":
        tree.links[b"loop.yaml"] = "loop.yaml"
    elif op == "pipe":
        tree.pipes.append(b"pipe.yaml")
    elif op == "empty":
        tree.files[b"empty.yaml"] = rng.choice([b"", b"---\n", b"# nothing\n", b"---\n---\n...\n", b"\n\n"])
    elif op == "big":
        tree.sparse[b"big.yaml"] = rng.choice([8 << 20, (8 << 20) + 1, 50_000_000])
    elif op == "bad-bytes":
        data = tree.files[name]
        at = rng.randrange(len(data) + 1)
        tree.files[name] = data[:at] + rng.choice([b"\xff", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\xf8\x88\x80"]) + data[at:]
    elif op == "deep-folder":
        tree.files[b"/".join([b"d"] * 30) + b"/" + name.split(b"/")[-1]] = tree.files.pop(name)
    else:
        tree.files[b".hidden/" + name.split(b"/")[-1]] = b"kind: [\n"  # hidden: never read
    return f"file:{op}"


def make_tree(seed: int, root: Path, outside: Path) -> list[str]:
    """Write the tree of `seed` below `root` (which must not exist); the mutations made."""
    global _BASES
    if _BASES is None:
        _BASES = bases()
    rng = random.Random(seed)
    files = dict(_BASES[seed % len(_BASES)])
    ops: list[str] = []
    count = rng.choice([0, 1, 1, 1, 2, 2, 3, 4]) if seed % 10 else 0  # every tenth tree stays valid
    if rng.random() < 0.4 and count:
        ops.append(mutate_data(rng, files))
        count -= 1
    tree = Tree(files)
    for _ in range(count):
        if rng.random() < 0.75:
            name = rng.choice(sorted(tree.files))
            new, op = mutate_text(rng, tree.text(name))
            tree.files[name] = new.encode("utf-8", "surrogatepass")
            ops.append(f"text:{op}")
        else:
            ops.append(mutate_files(rng, tree, outside))
    write(tree, root)
    return ops or ["none"]


def write(tree: Tree, root: Path) -> None:
    broot = os.fsencode(root)
    os.makedirs(broot)
    for name, data in tree.files.items():
        path = os.path.join(broot, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for name, target in tree.links.items():
        if not os.path.lexists(os.path.join(broot, name)):
            os.symlink(target, os.path.join(broot, name))
    for name in dict.fromkeys(tree.pipes):
        if not os.path.lexists(os.path.join(broot, name)):
            os.mkfifo(os.path.join(broot, name))
    for name, size in tree.sparse.items():
        with open(os.path.join(broot, name), "wb") as f:
            f.write(b"apiVersion: reconcile/v1\n")
            f.truncate(size)


def make_outside(folder: Path) -> None:
    """A folder beside the trees that links point to: its content must never be read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secret.yaml").write_text(f"apiVersion: {SECRET}\nkind: [{SECRET}\n")
    (folder / "x.yaml").write_text(f"{SECRET}: [\n")
