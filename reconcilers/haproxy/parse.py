"""From sections to the normalized shapes the plan diffs, the same way for what git wants
(rendered sections) and what the node runs (the file, plus the runtime's view of servers).

A proxy's state: `section` (frontend, backend, listen), `from` (its defaults section, if
named), `lines` (every directive but servers, in order), `servers` (backends and listens:
one dict per server, the fields the runtime API can change kept apart from the rest of the
line, `options`), `files` (what it refers to by reference). The HAProxy object's state:
`global`, `defaults` and `sections` as lines. What the runtime API sees for servers
(address, port, weight, admin state, checks, maxconn, backup) replaces what the file says,
since that is what HAProxy really does; everything else comes from the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconcilers.haproxy.config import ConfigFile, Section
from reconcilers.haproxy.runtime import CHECK_ENABLED, ProxyStat, RuntimeServer
from schemas.haproxy_lang import parse_server, words

# Words of a server line that are separate fields of the normalized server.
_FLAGS = {"check": ("check", True), "no-check": ("check", False), "backup": ("backup", True),
          "no-backup": ("backup", False), "disabled": ("state", "maint"), "enabled": ("state", "ready")}
_VALUED = {"weight", "maxconn"}


def server_state(line: str, default_server: list[str] = ()) -> tuple[str, dict[str, Any]] | None:
    """(name, normalized server) of a `server` line; `default_server` holds the words of
    the `default-server` lines it inherits (earlier in its section, or its defaults)."""
    parsed = parse_server(line)
    if parsed is None:
        return None
    addr = parsed.address
    server: dict[str, Any] = {"address": addr.host if addr.family in ("ipv4", "ipv6", "name") else str(addr),
                              "port": addr.port if addr.port is not None else (addr.port_text or None),
                              "weight": 1, "backup": False, "state": "ready", "check": False}
    options: list[str] = []
    for source, words_ in (("default", list(default_server)), ("server", parsed.options)):
        i = 0
        while i < len(words_):
            word = words_[i]
            if word in _FLAGS:
                key, value = _FLAGS[word]
                server[key] = value
            elif word in _VALUED and i + 1 < len(words_):
                value = words_[i + 1]
                server[word] = int(value) if value.isdigit() else value
                i += 1
            elif source == "server":
                options.append(word)
            i += 1
    server["options"] = " ".join(options)
    if addr.family == "name":
        server["host"] = server.pop("address")
    return parsed.name, server


def default_server_words(lines: list[str]) -> list[str]:
    return [w for line in lines if words(line)[:1] == ["default-server"] for w in words(line)[1:]]


def proxy_state(keyword: str, header_from: str | None, directives: list[str],
                inherited_default_server: list[str] = ()) -> dict[str, Any]:
    """A proxy section's normalized state from its directives (stripped, secret lines as
    tokens)."""
    state: dict[str, Any] = {"section": keyword}
    if header_from:
        state["from"] = header_from
    lines: list[str] = []
    servers: dict[str, dict[str, Any]] = {}
    default_server = list(inherited_default_server)
    for line in directives:
        w = words(line)
        if w and w[0] == "server" and keyword != "frontend":
            found = server_state(line, default_server)
            if found is not None:
                servers[found[0]] = found[1]
                continue
        elif w and w[0] == "default-server":
            default_server += w[1:]
        lines.append(line)
    state["lines"] = lines
    if keyword != "frontend":
        state["servers"] = servers
    return state


@dataclass
class Snapshot:
    """One batched look at HAProxy on this node: the file, and the runtime if it runs."""

    file: ConfigFile
    running: bool
    servers: dict[str, dict[str, RuntimeServer]] = field(default_factory=dict)
    frontends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    backends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    units: dict[str, str] | None = None  # with systemd: {"haproxy": is-enabled}, shown on each Frontend

    def loaded(self, keyword: str, name: str) -> bool:
        """Whether the running HAProxy has this proxy (a section in the file that did not
        load, after a refused reload, does not run)."""
        if keyword == "frontend":
            return name in self.frontends_stat
        return name in self.backends_stat

    def runtime_servers(self, backend: str, from_file: dict[str, dict[str, Any]],
                        templates: set[str]) -> dict[str, dict[str, Any]]:
        """The servers HAProxy runs in `backend`: runtime fields over what the file says.
        Servers a `server-template` makes (`templates`) are not objects of their own."""
        stat = self.backends_stat.get(backend, ProxyStat())
        out = {}
        for name, rs in self.servers.get(backend, {}).items():
            if name in templates:
                continue
            server = dict(from_file.get(name) or {"weight": 1, "backup": False, "check": False, "options": "",
                                                  "address": rs.address, "port": rs.port})
            row = stat.servers.get(name, {})
            if "host" in server:
                server["host"] = rs.fqdn or server["host"]
            elif server.get("address") is not None and not str(server["address"]).startswith(("/", "unix@", "abns@")):
                server["address"] = rs.address
            if isinstance(server.get("port"), int) or server.get("port") is None:
                server["port"] = rs.port or None
            server.update(weight=rs.weight, state=rs.state, check=bool(rs.check_state & CHECK_ENABLED),
                          backup=row.get("bck") == "1")
            server.pop("maxconn", None)
            if row.get("slim", "").isdigit() and int(row["slim"]) > 0:
                server["maxconn"] = int(row["slim"])
            out[name] = server
        return out


def template_names(section: Section | list[str]) -> set[str]:
    """Server names the section's `server-template` lines make (prefix1..prefixN); a
    section, or its directive lines."""
    names: set[str] = set()
    for line in section if isinstance(section, list) else section.directives():
        w = words(line)
        if w[:1] == ["server-template"] and len(w) > 2:
            low, _, high = w[2].partition("-")
            if low.isdigit() and (not high or high.isdigit()):
                first, last = (int(low), int(high)) if high else (1, int(low))
                names.update(f"{w[1]}{i}" for i in range(first, last + 1))
    return names
