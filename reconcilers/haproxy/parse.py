"""From what HAProxy runs back to the normalized shapes: sections of the file parsed into
Frontend and Backend dicts, completed by the runtime's view of servers (`Snapshot`).

What HAProxy really does comes from the runtime API: `show servers state` (addresses,
weights, admin state, checks) and `show stat` (which proxies run, their mode and
algorithm, backup flags, server maxconn). What the runtime cannot show (timeouts,
health-check paths, routing rules) comes from the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from reconcilers.haproxy.config import (
    EDITED, FOREIGN, IN_SYNC, NOT_IN_FILE, ConfigFile, Section, line_changes, shared_sections,
)
from reconcilers.haproxy.render import render_backend, render_frontend
from reconcilers.haproxy.runtime import CHECK_ENABLED, ProxyStat, RuntimeServer


def _opt(words: list[str], key: str) -> str | None:
    return words[words.index(key) + 1] if key in words[:-1] else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_frontend(section: Section) -> dict[str, Any]:
    """Best effort: the normalized Frontend dict a section says (unknown lines ignored)."""
    state: dict[str, Any] = {"mode": "http", "bind": [], "rules": [], "timeouts": {}}
    acls: dict[str, list[list[str]]] = {}
    for words in section.directives():
        key = words[0]
        if key == "mode" and len(words) > 1:
            state["mode"] = words[1]
        elif key == "bind" and len(words) > 1:
            state["bind"].append(words[1])
        elif key == "maxconn" and len(words) > 1 and words[1].isdigit():
            state["maxconn"] = int(words[1])
        elif key == "timeout" and len(words) > 2:
            name = {"client": "client", "http-request": "httpRequest"}.get(words[1])
            if name:
                state["timeouts"][name] = words[2]
        elif key == "acl" and len(words) > 3:
            acls.setdefault(words[1], []).append(words[2:])
        elif key == "use_backend" and len(words) > 1:
            rule: dict[str, Any] = {}
            for cond in words[3:] if len(words) > 3 and words[2] == "if" else []:
                for acl in acls.get(cond, [])[:1]:
                    if cond.endswith("_host"):
                        rule["host"] = ("*" + acl[-1]) if "end" in acl else acl[-1]
                    elif cond.endswith("_path"):
                        rule["path"] = acl[-1]
            rule["backend"] = words[1]
            state["rules"].append(rule)
        elif key == "default_backend" and len(words) > 1:
            state["defaultBackend"] = words[1]
    return state


def parse_backend(section: Section) -> dict[str, Any]:
    """Best effort: the normalized Backend dict a section says (unknown lines ignored)."""
    state: dict[str, Any] = {"mode": "http", "balance": "roundrobin", "timeouts": {}, "servers": {}}
    check: dict[str, Any] = {"type": "none"}
    httpchk: dict[str, Any] = {}
    for words in section.directives():
        key = words[0]
        if key == "mode" and len(words) > 1:
            state["mode"] = words[1]
        elif key == "balance" and len(words) > 1:
            state["balance"] = words[1]
        elif key == "option" and words[1:2] == ["httpchk"]:
            httpchk["path"] = words[-1] if len(words) > 3 else "/"
        elif key == "http-check" and words[1:3] == ["expect", "status"] and len(words) > 3 and words[3].isdigit():
            httpchk["expectStatus"] = int(words[3])
        elif key == "default-server":
            check = {"type": "tcp", "interval": _opt(words, "inter"), "fall": _int(_opt(words, "fall")),
                     "rise": _int(_opt(words, "rise"))}
        elif key == "timeout" and len(words) > 2 and words[1] in ("connect", "server", "queue"):
            state["timeouts"][words[1]] = words[2]
        elif key == "server" and len(words) > 2:
            address, _, port = words[2].rpartition(":")
            server: dict[str, Any] = {"address": address, "port": _int(port), "weight": _int(_opt(words, "weight") or "1"),
                                      "backup": "backup" in words, "state": "maint" if "disabled" in words else "ready",
                                      "check": "check" in words}
            if _opt(words, "maxconn") is not None:
                server["maxconn"] = _int(_opt(words, "maxconn"))
            state["servers"][words[1]] = server
    if check["type"] != "none" and httpchk:
        check = {**check, "type": "http", "path": httpchk.get("path", "/"), "expectStatus": httpchk.get("expectStatus", 200)}
    state["healthCheck"] = check
    return state


def _renderable(state: dict[str, Any]) -> dict[str, Any]:
    """A parsed backend completed with defaults, so that it can be rendered for comparison."""
    out = dict(state)
    out.setdefault("healthCheck", {"type": "none"})
    t = out.get("timeouts", {})
    out["timeouts"] = {k: t.get(k, "?") for k in ("connect", "server", "queue")}
    check = out["healthCheck"]
    if check["type"] != "none" and any(check.get(k) is None for k in ("interval", "fall", "rise")):
        out["healthCheck"] = {**check, "interval": check.get("interval") or "?", "fall": check.get("fall") or 0,
                              "rise": check.get("rise") or 0}
    return out


@dataclass
class Snapshot:
    """One batched look at HAProxy on this node: the file, and the runtime if it runs."""

    file: ConfigFile
    running: bool
    servers: dict[str, dict[str, RuntimeServer]] = field(default_factory=dict)
    frontends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    backends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    written: ConfigFile | None = None  # our copy of what we last installed, to describe hand edits
    units: dict[str, str] | None = None  # with systemd: {"haproxy": is-enabled}, shown on each Frontend

    # -- the two kinds' observed dicts

    def frontends(self) -> dict[str, dict[str, Any]]:
        if not self.running:
            return {}
        sections = self.file.of("frontend")
        out = {}
        for name, stat in self.frontends_stat.items():
            section = sections.get(name)
            state = parse_frontend(section) if section else {"config": NOT_IN_FILE}
            state["mode"] = stat.mode or state.get("mode")
            if section:
                state["config"] = self._config(section, lambda: render_frontend(name, state))
            if self.units is not None:
                state["units"] = self.units
            out[name] = state
        return out

    def backends(self) -> dict[str, dict[str, Any]]:
        if not self.running:
            return {}
        sections = self.file.of("backend")
        out = {}
        for name, stat in self.backends_stat.items():
            section = sections.get(name)
            state = parse_backend(section) if section else {"config": NOT_IN_FILE}
            state["mode"] = stat.mode or state.get("mode")
            state["balance"] = stat.algo or state.get("balance")
            in_file = state.get("servers", {})
            state["servers"] = self._runtime_servers(name, stat)
            if section:
                # Without our copy of the file, an edit is described against what runs,
                # with the servers the file lists (their run-time drift shows as fields).
                state["config"] = self._config(
                    section, lambda: render_backend(name, _renderable({**state, "servers": in_file})))
            out[name] = state
        return out

    def _runtime_servers(self, backend: str, stat: ProxyStat) -> dict[str, dict[str, Any]]:
        servers = {}
        for name, rs in self.servers.get(backend, {}).items():
            row = stat.servers.get(name, {})
            server: dict[str, Any] = {"address": rs.address, "port": rs.port, "weight": rs.weight,
                                      "backup": row.get("bck") == "1", "state": rs.state,
                                      "check": bool(rs.check_state & CHECK_ENABLED)}
            if row.get("slim", "").isdigit() and int(row["slim"]) > 0:
                server["maxconn"] = int(row["slim"])
            servers[name] = server
        return servers

    @cached_property
    def _file_wide_changes(self) -> list[str]:
        """Edits outside any one proxy section (global, defaults, sections we never write):
        they are reported on every object, since every object runs with them."""
        changes: list[str] = []
        if self.file.shared_edited:
            changes += line_changes(shared_sections(), self.file.shared)
        changes += [f"+section {s.keyword} {s.name}".rstrip() for s in self.file.unknown_sections]
        return changes

    def _config(self, section: Section, render: Callable[[], list[str]]) -> str:
        """`as generated`, or `edited by hand:` and what was edited, from the copy of what
        we last wrote (else from what the running state would render)."""
        if not self.file.generated:
            return FOREIGN
        changes: list[str] = []
        if section.edited:
            original = self.written.of(section.keyword).get(section.name) if self.written else None
            if original is not None and not original.edited:
                before = original.lines
            else:
                try:
                    before = render()
                except (KeyError, TypeError, ValueError):  # too mangled to render: just say so
                    before = []
            changes += line_changes(before, section.lines)
        changes += self._file_wide_changes
        if not changes:
            return EDITED if section.edited or self.file.shared_edited else IN_SYNC
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        return f"{EDITED}: {changes[0]}{more}"
