"""HAProxy's configuration language, as far as reconcile must understand it.

The language (configuration.txt §2): a file is a sequence of sections; a section starts
with one of `SECTION_KEYWORDS` as the first word of a line (indented or not) and holds
directives, one per line, words separated by unprotected blanks, `#` starting a comment
unless quoted or escaped, `"…"` weak and `'…'` strong quoting, `\\` escaping.

reconcile carries every directive as a validated line (`check_directive`) and understands
only what it must: names, addresses, server and bind lines, which directives run code or
open control paths (`capability`), and which carry a password (`inline_secret`).
Values reconcile writes into a line go through `haproxy_word` (reconcilers/haproxy/config.py).
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "mailers", "resolvers", "cache",
    "http-errors", "ring", "program", "log-forward", "fcgi-app",
})
PROXY_SECTIONS = ("frontend", "backend", "listen")
# Sections other than global, defaults and proxies: carried whole by the HAProxy kind.
OTHER_SECTIONS = ("userlist", "peers", "mailers", "resolvers", "cache", "http-errors", "ring", "program",
                  "log-forward", "fcgi-app")
CONDITIONALS = (".if", ".elif", ".else", ".endif", ".diag", ".notice", ".warning", ".alert")

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
# Anything that could end a line or fool a terminal: every control character but TAB.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")

SECRET_PLACEHOLDER = "((secret))"
FILE_PLACEHOLDER = "((file))"


def check_name(value: str) -> str:
    """A proxy, server or section name as HAProxy allows it: letters, digits, _ . : -"""
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r}: a name may use only letters, digits and _ . : - (at most 255)")
    return value


# --- words, quotes and comments ------------------------------------------------------------


def _scan(line: str) -> tuple[list[str], int, str]:
    """The words of `line` (quotes removed, escapes resolved), where its comment starts
    (len(line) when it has none), and the quote still open at its end ("" when none)."""
    out: list[str] = []
    word: list[str] | None = None
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                word.append(c)  # type: ignore[union-attr]
        elif c == "\\" and i + 1 < len(line):
            word = word if word is not None else []
            word.append(line[i + 1])
            i += 1
        elif quote == '"':
            if c == '"':
                quote = ""
            else:
                word.append(c)  # type: ignore[union-attr]
        elif c in "\"'":
            quote = c
            word = word if word is not None else []
        elif c in " \t":
            if word is not None:
                out.append("".join(word))
                word = None
        elif c == "#":
            break
        else:
            word = word if word is not None else []
            word.append(c)
        i += 1
    if word is not None:
        out.append("".join(word))
    return out, i, quote


_SPECIAL = re.compile(r"[\\'\"#]")


def words(line: str) -> list[str]:
    """The words HAProxy reads from `line` (quotes removed, escapes resolved, no comment)."""
    if not _SPECIAL.search(line):  # most lines: no quote, escape or comment
        return line.split()
    return _scan(line)[0]


def strip_comment(line: str) -> str:
    """`line` without its comment and surrounding blanks; quoted or escaped `#` stay."""
    if not _SPECIAL.search(line):
        return line.strip()
    return line[: _scan(line)[1]].strip()


# --- directives -----------------------------------------------------------------------------


def check_directive(value: str) -> str:
    """One directive line, stripped: refused if it could end the line, hide a second one,
    or open a section (which would smuggle a new section into the file)."""
    if _CONTROL.search(value):
        raise ValueError("a directive is one line: no newline, carriage return, NUL or other control character")
    line = value.strip()
    if not line:
        raise ValueError("a directive may not be empty")
    if line.startswith("#"):
        raise ValueError("a comment is not a directive (write comments in the YAML)")
    first, _, open_quote = _scan(line)
    if open_quote:
        raise ValueError(f"a quote ({open_quote}) that does not close: HAProxy quotes end on the same line")
    if not first:
        raise ValueError("a directive needs a keyword before its comment")
    if first[0] in SECTION_KEYWORDS:
        raise ValueError(f"{first[0]!r} starts a new section: a directive may not hold a section keyword "
                         f"(sections are manifests, or entries of the HAProxy kind)")
    return line


def inline_secret(line: str) -> str | None:
    """Why `line` holds a password written inline (None if it does not)."""
    w = words(line)
    if w[:2] == ["stats", "auth"] and len(w) > 2 and ":" in w[2] and w[2].split(":", 1)[1] \
            and SECRET_PLACEHOLDER not in w[2]:
        return "`stats auth` holds a password"
    if w[:1] == ["user"] and len(w) > 3:
        for i, word in enumerate(w[2:-1], start=2):
            if word in ("password", "insecure-password") and SECRET_PLACEHOLDER not in w[i + 1]:
                return f"`user {w[1]}` holds a password"
    return None


def capability(line: str, section: str) -> str | None:
    """The node policy capability (`haproxy.allow` in the policy file) a directive needs
    because it runs code or opens a control path; None for ordinary directives."""
    w = words(line)
    if not w:
        return None
    key = w[0]
    if key in ("lua-load", "lua-load-per-thread", "lua-prepend-path"):
        return "lua"
    if key in ("insecure-fork-wanted", "insecure-setuid-wanted"):
        return "insecure-fork"
    if key in ("setenv", "presetenv", "resetenv", "unsetenv"):
        return "environment"
    if key == "external-check" or w[:2] == ["option", "external-check"]:
        return "external-check"
    if section == "program":
        return "program"
    if w[:2] == ["stats", "socket"] and len(w) > 2 and not w[2].startswith(("/", "unix@", "abns@")):
        return "stats-socket-tcp"
    return None


CAPABILITIES = {
    "lua": "loads and runs Lua code",
    "insecure-fork": "lets HAProxy start programs",
    "environment": "changes the environment HAProxy and its children run with",
    "external-check": "runs a program as a health check",
    "program": "makes HAProxy's master start and supervise a program",
    "stats-socket-tcp": "opens the runtime API on a network address",
}


# --- addresses, servers, binds ----------------------------------------------------------------


@dataclass
class Address:
    """An address as a bind or server line gives it. `host` is an IP address (normalized)
    or a host name; `port` None when the line has none (or an offset, a range, a
    variable: `port_text` keeps it)."""

    host: str
    port: int | None
    family: str  # ipv4 | ipv6 | name | other (unix socket, fd@, environment variable …)
    port_text: str = ""

    @property
    def ip(self) -> bool:
        return self.family in ("ipv4", "ipv6")

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == "ipv6" else self.host
        return f"{host}:{self.port_text}" if self.port_text else host


_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})?")


@functools.lru_cache(maxsize=65536)
def ip_address(text: str) -> tuple[str, int] | None:
    """(normalized address, version 4 or 6), or None when `text` is not an IP address.
    Cached: thousands of servers share a few hundred addresses."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip), ip.version


def parse_address(text: str, *, bind: bool = False) -> Address:
    """HAProxy's `[prefix@]address[:port]` (§11), as far as reconcile must understand it."""
    prefix, _, rest = text.rpartition("@")
    if prefix and prefix not in ("ip", "ipv4", "ipv6", "tcp", "tcp4", "tcp6", "quic4", "quic6", "udp", "udp4", "udp6"):
        return Address(text, None, "other")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.removeprefix(":")
    elif rest.count(":") >= 1:
        host, _, port = rest.rpartition(":")
    else:
        host, port = rest, ""
    if "$" in text or "{" in text:
        return Address(text, None, "other")
    if host in ("", "*") and bind:
        host = "0.0.0.0"
    elif host == "::" and bind:
        pass
    ip = ip_address(host)
    if ip is not None:
        host, family = ip[0], ("ipv6" if ip[1] == 6 else "ipv4")
    elif not _HOST.fullmatch(host):
        return Address(text, None, "other")
    else:
        family = "name"
    number = int(port) if port.isdigit() and 0 < int(port) < 65536 else None
    return Address(host, number, family, port)


@dataclass
class ServerLine:
    """`server NAME ADDRESS [options]`: the name, the address, and the options as words."""

    name: str
    address: Address
    options: list[str] = field(default_factory=list)


def parse_server(line: str) -> ServerLine | None:
    """A `server` directive; None for any other line (or one too short to be a server)."""
    w = words(line)
    if len(w) < 3 or w[0] != "server":
        return None
    return ServerLine(w[1], parse_address(w[2]), w[3:])


def parse_bind(line: str) -> tuple[Address, list[str]] | None:
    """A `bind` directive: its (first) address and its options."""
    w = words(line)
    if len(w) < 2 or w[0] != "bind":
        return None
    return parse_address(w[1].split(",")[0], bind=True), w[2:]
