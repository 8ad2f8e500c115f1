"""The managed haproxy.cfg as a file: where it lives, its sections, and composing it.

One file, /etc/haproxy/haproxy.cfg, holds every HAProxy object of the node. It starts
with `GENERATED_HEADER`; then `global`, the sections that are not proxies, the defaults
sections, the frontends and the backends (and listens). A section starts wherever one of
HAProxy's section keywords is the first word of a line, indented or not.

A batch of changes is turned into a new file by `compose`: the sections the file has now,
with the batch's sections replaced, added or removed, so an object that is not part of the
batch (held back, refused earlier) keeps exactly what it runs.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from reconcilers.base import GENERATED_HEADER, ApplyError, UnsafeValue, one_line
from schemas.haproxy_lang import PROXY_SECTIONS, SECTION_KEYWORDS, strip_comment, words

CONFIG = Path("/etc/haproxy/haproxy.cfg")
BACKUP = Path("/etc/haproxy/haproxy.cfg.before-reconcile")
FILES = Path("/etc/haproxy/reconcile")  # certificates and other files by reference, 0600
MAPS = Path("/etc/haproxy/maps")
ACLS = Path("/etc/haproxy/acl")
ADMIN_SOCKET = Path("/run/haproxy/admin.sock")
MASTER_SOCKET = Path("/run/haproxy-master.sock")
PIDFILE = Path("/run/haproxy.pid")
STATE_FILE = Path("/var/lib/haproxy/server-state")
LOG_RING = "reconcile-log"

INDENT = "    "
OURS = "# reconcile"  # ends a line reconcile adds to an operator's section (import drops it)
SECRET_MARK = "# reconcile: the next line holds a secret"

# Section keyword → the kind that owns such sections.
KIND_OF = {"frontend": "Frontend", "backend": "Backend", "listen": "Backend"}
SectionKey = tuple[str, str]
"""(keyword, name): ("backend", "app"), ("global", ""), ("defaults", "http")."""


_PLAIN_WORD = re.compile(r"[A-Za-z0-9._:/%~*@+,=\[\]-]+")


def haproxy_word(value: object) -> str:
    """One word of haproxy.cfg, whatever the value holds: as it is when it is made of plain
    characters, else in single quotes (HAProxy's strong quoting: nothing inside is read as a
    space, comment, variable or escape). Refused (UnsafeValue) when no quoting keeps it one
    word of one line: empty, a control character or a line separator, a single quote, or a
    leading '-' (an ACL or server would read it as a flag)."""
    text = one_line(str(value), "haproxy.cfg")
    if _PLAIN_WORD.fullmatch(text) and not text.startswith("-"):
        return text
    if not text or "'" in text or text.startswith("-"):
        raise UnsafeValue(f"haproxy.cfg: refused to write {text!r}: it cannot be one word of the line")
    return f"'{text}'"


@dataclass
class Section:
    """One section as in a file: its header line, and its body lines as written."""

    keyword: str
    name: str
    header: str
    body: list[str] = field(default_factory=list)
    line: int = 0  # where its header is (1-based)

    @property
    def key(self) -> SectionKey:
        return (self.keyword, self.name)

    @property
    def parent(self) -> str | None:
        """The defaults section it names with `from`."""
        w = words(self.header)
        return w[w.index("from") + 1] if "from" in w[:-1] else None

    def directives(self) -> list[str]:
        """The directives (comments and blank lines aside), each stripped; a line right
        after reconcile's secret mark is returned as `SECRET_MARK + line`."""
        out = []
        marked = False
        for raw in self.body:
            if raw.strip() == SECRET_MARK:
                marked = True
                continue
            text = strip_comment(raw)
            if text:
                out.append(SECRET_MARK + text if marked else text)
            marked = False
        return out

    def lines(self) -> list[str]:
        return [self.header, *self.body]


def header_of(line: str) -> tuple[str, str] | None:
    """(keyword, name) when `line` starts a section."""
    w = words(line)
    if not w or w[0] not in SECTION_KEYWORDS:
        return None
    name = w[1] if len(w) > 1 and w[1] != "from" else ""
    return w[0], name


@dataclass
class ConfigFile:
    """A haproxy.cfg split into sections."""

    text: str | None  # None: there is no file
    generated: bool = False  # starts with our header
    sections: list[Section] = field(default_factory=list)
    preamble: list[str] = field(default_factory=list)  # lines before the first section

    def proxies(self) -> dict[SectionKey, Section]:
        return {s.key: s for s in self.sections if s.keyword in PROXY_SECTIONS}

    def of(self, keyword: str) -> dict[str, Section]:
        return {s.name: s for s in self.sections if s.keyword == keyword}

    @property
    def foreign_proxies(self) -> list[str]:
        """Proxies in a file we did not write (we refuse to overwrite those)."""
        if self.generated or self.text is None:
            return []
        return [f"{s.keyword} {s.name}" for s in self.sections if s.keyword in PROXY_SECTIONS]


def parse_config(text: str | None) -> ConfigFile:
    if text is None:
        return ConfigFile(None)
    preamble: list[str] = []
    sections: list[Section] = []
    for n, line in enumerate(text.splitlines(), start=1):
        found = header_of(line)
        if found is not None:
            sections.append(Section(found[0], found[1], line.strip(), [], n))
        elif sections:
            sections[-1].body.append(line)
        else:
            preamble.append(line)
    for s in sections:  # blank lines between sections belong to neither
        while s.body and not s.body[-1].strip():
            s.body.pop()
    generated = bool(preamble) and preamble[0] == f"# {GENERATED_HEADER}"
    return ConfigFile(text, generated, sections, preamble)


def read_config(path: Path = CONFIG) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ApplyError(f"cannot read {path}: {err}") from None


def section_at(text: str, line: int) -> SectionKey | None:
    """(keyword, name) of the section that holds line `line` (1-based) of `text`."""
    lines = text.splitlines()
    for i in range(min(line, len(lines)) - 1, -1, -1):
        found = header_of(lines[i])
        if found is not None:
            return found
    return None


# --- composing a new file ----------------------------------------------------------------------

Sections = dict[SectionKey, list[str]]
"""(keyword, name) → the section's lines, header first."""

ORDER = ("global", "userlist", "peers", "mailers", "resolvers", "cache", "http-errors", "ring", "program",
         "log-forward", "fcgi-app", "defaults", "frontend", "listen", "backend")


def sections_of(file: ConfigFile, adopted: bool = False) -> Sections:
    """Every section a generated (or adopted) file holds now, in its order (a foreign file
    holds none of ours)."""
    if not file.generated and not adopted:
        return {}
    return {s.key: s.lines() for s in file.sections}


def compose(sections: Sections, defaults_order: list[str] | None = None) -> str:
    """The whole file: global first, then the other sections, the defaults (in
    `defaults_order` when given: the last is what proxies without `from` take), the
    frontends, listens and backends, each kind by name."""
    rank = {k: i for i, k in enumerate(ORDER)}
    position = {name: i for i, name in enumerate(defaults_order or [])}

    def order(key: SectionKey) -> tuple:
        keyword, name = key
        if keyword == "defaults":
            return (rank[keyword], position.get(name, len(position)), name)
        return (rank.get(keyword, len(ORDER)), "" if keyword == "global" else name)

    lines = [f"# {GENERATED_HEADER}"]
    for key in sorted(sections, key=order):
        lines += ["", *sections[key]]
    return "\n".join(lines) + "\n"


def line_changes(before: list[str], after: list[str]) -> list[str]:
    """What changed between two versions of lines, for people: `'old' -> 'new'`, `+'added'`,
    `-'removed'`."""
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if op == "replace":
            pairs = list(zip(before[i1:i2], after[j1:j2]))
            out += [f"{a!r} -> {b!r}" for a, b in pairs]
            out += [f"-{a!r}" for a in before[i1 + len(pairs):i2]] + [f"+{b!r}" for b in after[j1 + len(pairs):j2]]
        elif op == "delete":
            out += [f"-{a!r}" for a in before[i1:i2]]
        elif op == "insert":
            out += [f"+{b!r}" for b in after[j1:j2]]
    return out
