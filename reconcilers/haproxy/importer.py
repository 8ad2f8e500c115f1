"""`reconcile import haproxy FILE | --live`: manifests that reproduce a haproxy.cfg.

Every section becomes an object and every directive a line of it, in order: `global`,
`defaults` and the sections that are not proxies go to one HAProxy manifest, each
frontend to a Frontend, each backend and listen to a Backend (`section: listen`). Comments
and blank lines are dropped; whitespace inside a line is kept. A password written inline
(`stats auth`, a userlist's `password`) moves to a file under the secrets folder and the
line names it by reference. What reconcile adds, and where its way of writing the file
differs from the original (proxies after every defaults section, so one that followed an
earlier defaults names it with `from`), is said in the notes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from reconcilers.base import GENERATED_HEADER, UnsafeValue
from reconcilers.haproxy.config import ADMIN_SOCKET, CONFIG, OURS, PIDFILE, haproxy_word, header_of
from reconcilers.haproxy.process import file_digest
from reconcilers.importing import Imported, ImportProblem
from schemas.haproxy_lang import (
    CAPABILITIES, PROXY_SECTIONS, SECRET_PLACEHOLDER, capability, check_directive, check_name,
    inline_secret, strip_comment, words,
)

API = "reconcile/v1"
EMPTY_DEFAULTS = "haproxy-defaults"  # for a proxy that came before any defaults section


class _Section:
    def __init__(self, keyword: str, name: str, line: int, parent: str | None, before: "_Section | None"):
        self.keyword, self.name, self.line, self.parent = keyword, name, line, parent
        self.before = before  # the defaults section before it in the file (what it takes without `from`)
        self.directives: list[tuple[int, str]] = []


def import_text(text: str, source: str, placement: dict[str, str], secrets_dir: Path) -> Imported:
    out = Imported()
    sections = _sections(text.splitlines(), source, text.startswith(f"# {GENERATED_HEADER}"))
    defaults = [s for s in sections if s.keyword == "defaults"]
    _name_defaults(defaults, sections, out, source)
    empty = False
    spec: dict[str, Any] = {**placement, "global": [], "defaults": [], "sections": []}
    proxies: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    for s in sections:
        lines = [_directive(s, n, line, source, secrets_dir, out) for n, line in s.directives]
        if s.keyword == "global":
            spec["global"] += lines
        elif s.keyword == "defaults":
            entry: dict[str, Any] = {}
            if s.name:
                entry["name"] = s.name
            if s.parent:
                entry["defaults"] = s.parent
            spec["defaults"].append({**entry, "directives": lines})
        elif s.keyword not in PROXY_SECTIONS:
            spec["sections"].append({"type": s.keyword, "name": s.name, "directives": lines})
        else:
            kind = "Frontend" if s.keyword == "frontend" else "Backend"
            first = seen.setdefault((kind, s.name), s.line)
            if first != s.line:
                raise ImportProblem(f"{source}:{s.line}: {s.keyword} {s.name!r} again (first at line {first}): "
                                    f"HAProxy refuses two proxies of one name and capability")
            proxy_spec: dict[str, Any] = dict(placement)
            if s.keyword == "listen":
                proxy_spec["section"] = "listen"
            parent = s.parent or _positional(s, defaults, out, source)
            empty = empty or parent == EMPTY_DEFAULTS
            if parent:
                proxy_spec["defaults"] = parent
            proxy_spec["directives"] = lines
            proxies.append({"apiVersion": API, "kind": kind, "metadata": {"name": s.name}, "spec": proxy_spec})
    if empty:
        spec["defaults"].insert(0, {"name": EMPTY_DEFAULTS, "directives": []})
    spec = {k: v for k, v in spec.items() if v or k == "global"}
    # The label lets reconcile take over exactly this file on a node (it never overwrites
    # a configuration it did not write otherwise).
    metadata = {"name": "haproxy", "labels": {"imported-from": file_digest(text)}}
    out.documents = [{"apiVersion": API, "kind": "HAProxy", "metadata": metadata, "spec": spec}, *proxies]
    out.notes += _additions(sections)
    return out


def _sections(lines: list[str], source: str, generated: bool) -> list[_Section]:
    sections: list[_Section] = []
    depth: list[int] = []  # lines of the open .if blocks
    last_defaults: _Section | None = None
    for n, raw in enumerate(lines, start=1):
        found = header_of(raw)
        if found is not None:
            if depth:
                raise ImportProblem(f"{source}:{depth[-1]}: this .if block spans sections (it is still open at "
                                    f"line {n}); reconcile keeps sections apart: put the condition inside each")
            keyword, name = found
            w = words(raw)
            parent = w[w.index("from") + 1] if "from" in w[:-1] else None
            extra = [x for x in w[1:] if x not in (name, "from", parent)]
            if extra:
                raise ImportProblem(f"{source}:{n}: `{' '.join(w)}`: the section line holds more than a name and "
                                    f"`from` (an old form HAProxy 2.6 no longer reads): write an address as a bind line")
            if keyword not in ("global", "defaults") and not name:
                raise ImportProblem(f"{source}:{n}: a {keyword} section needs a name")
            for given in (name, parent):
                if given:
                    try:
                        check_name(given)
                    except ValueError as err:
                        raise ImportProblem(f"{source}:{n}: {err}") from None
            sections.append(_Section(keyword, name, n, parent, last_defaults))
            if keyword == "defaults":
                last_defaults = sections[-1]
            continue
        if generated and raw.rstrip().endswith(OURS):
            continue  # a line reconcile added: it adds it again
        text = strip_comment(raw)
        if not text:
            continue
        if not sections:
            raise ImportProblem(f"{source}:{n}: `{text[:60]}` stands outside any section")
        first = words(text)[:1]
        if first == [".if"]:
            depth.append(n)
        elif first == [".endif"] and depth:
            depth.pop()
        sections[-1].directives.append((n, text))
    if depth:
        raise ImportProblem(f"{source}:{depth[-1]}: this .if block is never closed")
    return sections


def _name_defaults(defaults: list[_Section], sections: list[_Section], out: Imported, source: str) -> None:
    """Every defaults section but the last that a proxy relies on by position needs a name
    (proxies are written after every defaults section and name theirs with `from`)."""
    used = {id(s.before) for s in sections if s.keyword in PROXY_SECTIONS and not s.parent}
    names = {d.name for d in defaults if d.name}
    for d in defaults[:-1]:
        if not d.name and id(d) in used:
            d.name = f"defaults-line-{d.line}"
            while d.name in names:
                d.name += "-"
            names.add(d.name)
            out.notes.append(f"{source}:{d.line}: an unnamed defaults section that is not the last one is named "
                             f"{d.name!r}, so that the proxies that followed it can name it (`from {d.name}`)")


def _positional(s: _Section, defaults: list[_Section], out: Imported, source: str) -> str | None:
    """The `from` a proxy needs to keep the defaults it had by position, if any."""
    if not defaults or s.before is defaults[-1]:
        return None
    if s.before is None:
        # Before any defaults section HAProxy's own defaults apply: an empty defaults
        # section says the same.
        out.notes.append(f"{source}:{s.line}: {s.keyword} {s.name} came before any defaults section: it gets "
                         f"`from {EMPTY_DEFAULTS}`, an empty defaults section added for it (HAProxy's own defaults)")
        return EMPTY_DEFAULTS
    out.notes.append(f"{source}:{s.line}: {s.keyword} {s.name} gets `from {s.before.name}` (it followed that "
                     f"defaults section; reconcile writes proxies after the last one)")
    return s.before.name


def _untab(text: str, where: str) -> str:
    """`text` with its tabs between words turned into spaces (the same to HAProxy; a
    manifest's string is one line without control characters). A tab inside quotes is part
    of a value and cannot be carried: refused."""
    if "\t" not in text:
        return text
    out, quote, escaped = [], "", False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            if c == quote:
                quote = ""
            elif c == "\t":
                raise ImportProblem(f"{where}: a tab inside quotes is part of the value and cannot be written in a "
                                    f"manifest: write it as \\t (HAProxy reads that as a tab inside double quotes)")
        elif c in "'\"":
            quote = c
        elif c == "\t":
            c = " "
        out.append(c)
    return "".join(out)


def _directive(s: _Section, n: int, text: str, source: str, secrets_dir: Path, out: Imported) -> Any:
    text = _untab(text, f"{source}:{n}")
    try:
        check_directive(text)
    except ValueError as err:
        raise ImportProblem(f"{source}:{n}: {err}") from None
    need = capability(text, s.keyword)
    if need:
        out.notes.append(f"{source}:{n}: `{' '.join(words(text)[:2])}` {CAPABILITIES[need]}: a node applies it "
                         f"only if its policy allows haproxy capability {need!r} (/etc/reconcile/policy.yaml)")
    if not inline_secret(text):
        return text
    w = words(text)
    if w[:2] == ["stats", "auth"]:
        user, value = w[2].split(":", 1)
        label = f"stats-auth-{s.keyword}-{s.name or 'global'}-{user}"
    else:
        i = next(i for i in range(2, len(w) - 1) if w[i] in ("password", "insecure-password"))
        value, label = w[i + 1], f"userlist-{s.name}-{w[1]}"
    try:
        plain = haproxy_word(value) == value
    except UnsafeValue:
        plain = False
    if text.count(value) != 1 or not plain:
        raise ImportProblem(f"{source}:{n}: a password in this line is quoted or escaped: give it by reference by "
                            f"hand ({{line: '… ((secret)) …', secret: {{file: /path}}}})")
    path = secrets_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    out.secrets[path] = value
    out.notes.append(f"{source}:{n}: the password moved to {path} (0600); the manifest names it by reference")
    return {"line": text.replace(value, SECRET_PLACEHOLDER, 1), "secret": {"file": str(path)}}


def _additions(sections: list[_Section]) -> list[str]:
    """What reconcile adds when it renders this file, and what of the file limits it."""
    glob = [t for s in sections if s.keyword == "global" for _, t in s.directives]
    notes = []
    sockets = [words(t) for t in glob if words(t)[:2] == ["stats", "socket"]]
    ours = [w for w in sockets if len(w) > 2 and w[2] == str(ADMIN_SOCKET)]
    if not ours:
        notes.append(f"reconcile adds `stats socket {ADMIN_SOCKET} ... level admin` to global: its runtime API")
    elif not any(w[i:i + 2] == ["level", "admin"] for w in ours for i in range(len(w))):
        notes.append(f"conflict: the file's {ADMIN_SOCKET} is not `level admin`, which reconcile's runtime API "
                     f"needs (server changes without a reload will be refused)")
    if not any(words(t)[:1] == ["server-state-file"] for t in glob):
        notes.append("reconcile adds `server-state-file` to global (runtime drains and weights survive a reload)")
    if not any(words(t)[:1] == ["hard-stop-after"] for t in glob):
        notes.append("reconcile adds `hard-stop-after 30m` to global (bounds how long an old worker stays)")
    for s in sections:
        if s.keyword == "defaults":
            lines = [words(t) for _, t in s.directives if words(t)[:1] == ["load-server-state-from-file"]]
            if not lines:
                notes.append(f"reconcile adds `load-server-state-from-file global` to defaults {s.name or ''}".rstrip())
            elif lines[-1][1:2] != ["global"]:
                notes.append(f"conflict: defaults {s.name or ''} loads server state from {lines[-1][1:2]}: runtime "
                             f"drains and weights do not survive a reload there")
    return notes


def live(node: str) -> tuple[str, str]:
    """The configuration the running HAProxy read: the `-f` files of its master."""
    files = _master_files() or [CONFIG]
    texts = []
    for f in files:
        paths = sorted(f.glob("*.cfg")) if f.is_dir() else [f]
        for path in paths:
            try:
                texts.append(path.read_text())
            except OSError as err:
                raise ImportProblem(f"{path}: cannot read the running configuration: {err.strerror or err}") from None
    return f"{', '.join(str(f) for f in files)} (running on {node})", "\n".join(texts)


def _master_files() -> list[Path]:
    pids = []
    try:
        pids.append(int(PIDFILE.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "haproxy":
                    pids.append(int(entry.name))
            except OSError:
                continue
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        files = [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "-f"]
        if files:
            return [f if f.is_absolute() else Path(os.path.join("/", f)) for f in files]
    return []
