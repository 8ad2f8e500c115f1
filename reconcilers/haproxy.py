"""HAProxy on one node: the one managed config, its runtime API and its master process.

Shared by the Frontend and Backend reconcilers. Each of them owns sections of one file,
/etc/haproxy/haproxy.cfg, which starts with `GENERATED_HEADER`. Every section we write
carries a digest comment, so a section edited by hand is recognised without knowing what
git wants (`config: edited by hand` in the plan).

What HAProxy really does is read, in one batch, from the admin socket: `show servers
state` (addresses, weights, admin state, checks) and `show stat` (which proxies run, their
mode and algorithm, backup flags and server maxconn). Fields the runtime cannot show
(timeouts, health-check paths, routing rules) come from the file.

Changes:
- server-only changes (add, remove, weight, address, maxconn, ready/drain/maint, checks)
  go through the runtime API, with no reload, and the same step rewrites the file so that
  a restart agrees;
- anything else (a frontend, backend settings, a new or removed backend, a backup flag)
  is rendered, checked with `haproxy -c` on the temp file, installed atomically, and
  loaded by a hitless reload through the master (`-W -S`). The server state is saved to
  `server-state-file` first, so drains and weights survive the reload.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import io
import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from reconcilers.base import (
    GENERATED_HEADER, ApplyError, AtomicWriter, CommandError, Node, pid_alive, systemd_running, validated_temp,
)

CONFIG = Path("/etc/haproxy/haproxy.cfg")
BACKUP = Path("/etc/haproxy/haproxy.cfg.before-reconcile")
ADMIN_SOCKET = Path("/run/haproxy/admin.sock")
MASTER_SOCKET = Path("/run/haproxy-master.sock")
PIDFILE = Path("/run/haproxy.pid")
STATE_FILE = Path("/var/lib/haproxy/server-state")

IN_SYNC = "as generated"
EDITED = "edited by hand"
NOT_IN_FILE = "not in the file (running from an older configuration)"

INDENT = "    "
DIGEST_RE = re.compile(r"^# reconcile: (?P<what>.+), digest (?P<digest>[0-9a-f]{16})$")


# --- the normalized shapes (what `desired` and `observe` both return) ----------------------


def frontend_state(spec: Any) -> dict[str, Any]:
    """A Frontend spec as the normalized dict the plan diffs."""
    state: dict[str, Any] = {
        "mode": spec.mode,
        "bind": [f"{b.address}:{b.port}" for b in spec.bind],
        "defaultBackend": spec.defaultBackend,
        "rules": [{k: v for k, v in (("host", r.host), ("path", r.path), ("backend", r.backend)) if v is not None}
                  for r in spec.rules],
        "timeouts": {"client": spec.timeouts.client},
        "config": IN_SYNC,
    }
    if spec.mode == "http":
        state["timeouts"]["httpRequest"] = spec.timeouts.httpRequest
    if spec.maxconn is not None:
        state["maxconn"] = spec.maxconn
    return state


def backend_state(spec: Any) -> dict[str, Any]:
    """A Backend spec as the normalized dict the plan diffs: servers keyed by name."""
    hc = spec.healthCheck
    check: dict[str, Any] = {"type": hc.type}
    if hc.type != "none":
        check.update(interval=hc.interval, fall=hc.fall, rise=hc.rise)
    if hc.type == "http":
        check.update(path=hc.path, expectStatus=hc.expectStatus)
    servers = {}
    for s in spec.servers:
        server: dict[str, Any] = {"address": s.address, "port": s.port, "weight": s.weight, "backup": s.backup,
                                  "state": s.state, "check": hc.type != "none"}
        if s.maxconn is not None:
            server["maxconn"] = s.maxconn
        servers[s.name] = server
    return {
        "mode": spec.mode,
        "balance": spec.balance,
        "healthCheck": check,
        "timeouts": {"connect": spec.timeouts.connect, "server": spec.timeouts.server, "queue": spec.timeouts.queue},
        "servers": servers,
        "config": IN_SYNC,
    }


def backend_ignore(spec: Any) -> tuple[str, ...]:
    """JSON pointers an operator may change at run time for this backend (`spec.ignore`)."""
    return tuple(f"/servers/*/{name}" for name in spec.ignore)


def desired_sections(tree: Any, node: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(frontends, backends): the normalized states of every HAProxy object on `node`."""
    frontends = {m.metadata.name: frontend_state(m.spec) for m in tree.on_node("Frontend", node)}
    backends = {m.metadata.name: backend_state(m.spec) for m in tree.on_node("Backend", node)}
    return frontends, backends


# --- rendering ---------------------------------------------------------------------------


def _digest(lines: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _section(header: str, what: str, body: list[str]) -> list[str]:
    """A section with its digest comment as the first line of the body."""
    body = [INDENT + line for line in body]
    return [header, f"{INDENT}# reconcile: {what}, digest {_digest([header, *body])}", *body]


def shared_sections() -> list[str]:
    """The header, `global` and `defaults`: fixed, the same on every node."""
    body = [
        "global",
        INDENT + "user haproxy",
        INDENT + "group haproxy",
        INDENT + "chroot /var/lib/haproxy",
        # The admin socket is the runtime API; `expose-fd listeners` also lets a non
        # master-worker reload (-x) take the listening sockets over.
        INDENT + f"stats socket {ADMIN_SOCKET} mode 660 level admin expose-fd listeners",
        INDENT + "stats timeout 30s",
        # Saved just before each reload, so runtime drains and weights survive it.
        INDENT + f"server-state-file {STATE_FILE}",
        # Old workers finish their connections after a reload; this bounds how long one
        # stays (a long TCP session is cut after that).
        INDENT + "hard-stop-after 30m",
        "",
        "defaults",
        INDENT + "mode http",
        INDENT + "load-server-state-from-file global",
        INDENT + "option redispatch",
        INDENT + "retries 3",
        INDENT + "timeout connect 5s",
        INDENT + "timeout client 30s",
        INDENT + "timeout server 30s",
        INDENT + "timeout queue 30s",
    ]
    return [f"# {GENERATED_HEADER}", f"# reconcile: shared sections, digest {_digest(body)}", *body]


def _bind_options(address: str) -> str:
    # A bind to a floating address must work on the node that does not hold it now
    # (keepalived BACKUP, Pacemaker elsewhere): IP_TRANSPARENT on our own listening
    # socket allows that, without the node-wide ip_nonlocal_bind sysctl.
    ip = ipaddress.IPv4Address(address)
    return "" if ip.is_unspecified or ip.is_loopback else " transparent"


def _host_acl(host: str) -> str:
    fetch = "req.hdr(host),field(1,:)"  # the Host header without a port
    if host.startswith("*."):
        return f"{fetch} -m end -i {host[1:]}"
    return f"{fetch} -m str -i {host}"


def _path_acls(path: str) -> list[str]:
    # A path prefix matches whole segments: /api matches /api and /api/x, not /apix.
    if path.endswith("/"):
        return [f"path_beg {path}"]
    return [f"path {path}", f"path_beg {path}/"]


def render_frontend(name: str, state: dict[str, Any]) -> list[str]:
    body = [f"mode {state['mode']}"]
    if state["mode"] == "http":
        # A reload must not break idle keep-alive connections: the old worker answers
        # their next request with "Connection: close" instead of closing them under the
        # client's feet.
        body.append("option idle-close-on-response")
    for bind in state["bind"]:
        address = bind.rsplit(":", 1)[0]
        body.append(f"bind {bind}{_bind_options(address)}")
    if "maxconn" in state:
        body.append(f"maxconn {state['maxconn']}")
    body.append(f"timeout client {state['timeouts']['client']}")
    if "httpRequest" in state["timeouts"]:
        body.append(f"timeout http-request {state['timeouts']['httpRequest']}")
    for i, rule in enumerate(state["rules"]):
        conditions = []
        if "host" in rule:
            body.append(f"acl rule{i}_host {_host_acl(rule['host'])}")
            conditions.append(f"rule{i}_host")
        if "path" in rule:
            body += [f"acl rule{i}_path {acl}" for acl in _path_acls(rule["path"])]
            conditions.append(f"rule{i}_path")
        body.append(f"use_backend {rule['backend']} if {' '.join(conditions)}")
    body.append(f"default_backend {state['defaultBackend']}")
    return _section(f"frontend {name}", f"Frontend {name}", body)


def server_args(server: dict[str, Any], check: dict[str, Any]) -> list[str]:
    """The arguments after `server NAME` in the file, and after `add server BE/NAME` on
    the runtime API (dynamic servers take no `default-server` settings)."""
    args = [f"{server['address']}:{server['port']}", "weight", str(server["weight"])]
    if server["backup"]:
        args.append("backup")
    if "maxconn" in server:
        args += ["maxconn", str(server["maxconn"])]
    if server["check"] and check["type"] != "none":
        args += ["check", "inter", check["interval"], "fall", str(check["fall"]), "rise", str(check["rise"])]
    return args


def render_backend(name: str, state: dict[str, Any]) -> list[str]:
    check = state["healthCheck"]
    body = [f"mode {state['mode']}", f"balance {state['balance']}"]
    if state["balance"] == "source":
        body.append("hash-type consistent")  # a dynamic algorithm: servers can be added at run time
    if check["type"] == "http":
        body.append(f"option httpchk GET {check['path']}")
        body.append(f"http-check expect status {check['expectStatus']}")
    if check["type"] != "none":
        body.append(f"default-server inter {check['interval']} fall {check['fall']} rise {check['rise']}")
    t = state["timeouts"]
    body += [f"timeout connect {t['connect']}", f"timeout server {t['server']}", f"timeout queue {t['queue']}"]
    for server_name, server in sorted(state["servers"].items()):
        line = f"server {server_name} {' '.join(server_args(server, check))}"
        if server["state"] == "maint":
            line += " disabled"
        body.append(line)
    return _section(f"backend {name}", f"Backend {name}", body)


def render_config(frontends: dict[str, list[str]], backends: dict[str, list[str]]) -> str:
    """The whole file from rendered sections (frontends, then backends, by name)."""
    lines = shared_sections()
    for name in sorted(frontends):
        lines += ["", *frontends[name]]
    for name in sorted(backends):
        lines += ["", *backends[name]]
    return "\n".join(lines) + "\n"


def render_desired(frontends: dict[str, dict], backends: dict[str, dict]) -> str:
    return render_config({n: render_frontend(n, s) for n, s in frontends.items()},
                         {n: render_backend(n, s) for n, s in backends.items()})


# --- parsing the file (what we generated, or what someone made of it) ----------------------


@dataclass
class Section:
    keyword: str  # frontend | backend | listen | global | defaults | …
    name: str
    lines: list[str]  # the header line and the body, as in the file

    @property
    def edited(self) -> bool:
        """True unless the digest comment matches the section: written by us, untouched."""
        body = [line for line in self.lines[1:] if not DIGEST_RE.match(line.strip())]
        digests = [m.group("digest") for line in self.lines[1:] if (m := DIGEST_RE.match(line.strip()))]
        return len(digests) != 1 or digests[0] != _digest([self.lines[0], *body])

    def directives(self) -> list[list[str]]:
        out = []
        for line in self.lines[1:]:
            text = line.split("#", 1)[0].strip()
            if text:
                out.append(text.split())
        return out


@dataclass
class ConfigFile:
    """The managed file, split into sections."""

    text: str | None  # None: there is no file
    generated: bool = False  # starts with our header
    shared_edited: bool = False  # header, global or defaults differ from what we write
    sections: list[Section] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # header, global and defaults as in the file

    def of(self, keyword: str) -> dict[str, Section]:
        return {s.name: s for s in self.sections if s.keyword == keyword}

    @property
    def foreign_proxies(self) -> list[str]:
        """Proxies in a file we did not write (we refuse to overwrite those)."""
        if self.generated or self.text is None:
            return []
        return [f"{s.keyword} {s.name}" for s in self.sections if s.keyword in ("frontend", "backend", "listen")]

    @property
    def unknown_sections(self) -> list[Section]:
        return [s for s in self.sections if s.keyword not in ("frontend", "backend")]


def parse_config(text: str | None) -> ConfigFile:
    if text is None:
        return ConfigFile(None)
    lines = text.splitlines()
    preamble: list[str] = []
    sections: list[Section] = []
    shared: list[str] = []
    for line in lines:
        stripped = line.strip()
        starts_section = line[:1] not in (" ", "\t", "#", "") and stripped
        if starts_section:
            words = stripped.split("#", 1)[0].split()
            keyword, name = words[0], (words[1] if len(words) > 1 else "")
            if keyword in ("global", "defaults") and not sections:
                shared.append(line)
                continue
            sections.append(Section(keyword, name, [line]))
        elif sections:
            sections[-1].lines.append(line)
        elif shared:
            shared.append(line)
        else:
            preamble.append(line)
    for s in sections:  # blank lines between sections belong to neither
        while len(s.lines) > 1 and not s.lines[-1].strip():
            s.lines.pop()
    while shared and not shared[-1].strip():
        shared.pop()
    generated = bool(preamble) and preamble[0] == f"# {GENERATED_HEADER}"
    expected = shared_sections()
    shared_edited = generated and (preamble + shared) != expected
    return ConfigFile(text, generated, shared_edited, sections, preamble + shared)


def _opt(words: list[str], key: str) -> str | None:
    return words[words.index(key) + 1] if key in words[:-1] else None


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


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# --- the runtime API ------------------------------------------------------------------------


class RuntimeAPI:
    """HAProxy's admin socket (one command per connection, answer read to EOF), and the
    master CLI. Every command is reported to the runner (`guard`): in dry-run only
    `show …` may pass."""

    def __init__(self, node: Node, admin: Path = ADMIN_SOCKET, master: Path = MASTER_SOCKET, timeout: float = 10.0):
        self.node, self.admin, self.master, self.timeout = node, admin, master, timeout

    def command(self, cmd: str, *, read_only: bool) -> str:
        self.node.runner.guard("haproxy-api", [cmd], read_only=read_only)
        return self._exchange(self.admin, cmd)

    def master_command(self, cmd: str, *, read_only: bool, wait: bool = True) -> str:
        """A command on the master CLI. `wait=False` only waits briefly for an answer: the
        master drops the connection on a good `reload` but may hold it on a failed one."""
        self.node.runner.guard("haproxy-master", [cmd], read_only=read_only)
        return self._exchange(self.master, cmd, None if wait else 0.5)

    def reachable(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.admin))
            return True
        except OSError:
            return False

    def _exchange(self, path: Path, cmd: str, answer_within: float | None = None) -> str:
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(str(path))
                s.sendall(cmd.encode() + b"\n")
                if answer_within is not None:
                    s.settimeout(answer_within)
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except ConnectionResetError:  # the master re-executes on `reload` and drops us
            pass
        except socket.timeout:
            if answer_within is not None:
                return b"".join(chunks).decode(errors="replace")
            raise ApplyError(f"HAProxy did not answer `{cmd}` on {path} within {self.timeout:.0f}s") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise ApplyError(f"HAProxy is not running (nothing answers on {path})") from None
        except OSError as err:
            raise ApplyError(f"cannot talk to HAProxy on {path}: {err.strerror or err}") from None
        return b"".join(chunks).decode(errors="replace")

    def checked(self, cmd: str, ok: str = r"^$") -> str:
        """Run a changing command; raise ApplyError unless the answer matches `ok`."""
        answer = self.command(cmd, read_only=False).strip()
        if not re.search(ok, answer, re.S):
            raise ApplyError(f"HAProxy refused `{cmd}`: {answer or '(no answer)'}")
        return answer


# --- observing what runs ----------------------------------------------------------------------

# srv_admin_state bits (include/haproxy/server-t.h). CMAINT alone only records that the
# file said `disabled`: once set ready at run time the server serves although it stays set.
ADMIN_MAINT = 0x01 | 0x02 | 0x20  # forced, inherited, resolution
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited
CHECK_ENABLED = 0x04  # srv_check_state: CHK_ST_ENABLED


def admin_state(bits: int) -> str:
    if bits & ADMIN_MAINT:
        return "maint"
    if bits & ADMIN_DRAIN:
        return "drain"
    return "ready"


@dataclass
class RuntimeServer:
    backend: str
    name: str
    address: str
    port: int
    admin: int
    weight: int
    check_state: int

    @property
    def state(self) -> str:
        return admin_state(self.admin)


def parse_servers_state(text: str) -> dict[str, dict[str, RuntimeServer]]:
    """`show servers state` → backend → server → RuntimeServer."""
    out: dict[str, dict[str, RuntimeServer]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
            continue
        words = line.split()
        if not header or len(words) < len(header) - 2:
            continue
        row = dict(zip(header, words))
        try:
            server = RuntimeServer(row["be_name"], row["srv_name"], row["srv_addr"], int(row["srv_port"]),
                                   int(row["srv_admin_state"]), int(row["srv_uweight"]), int(row["srv_check_state"]))
        except (KeyError, ValueError):
            continue
        out.setdefault(server.backend, {})[server.name] = server
    return out


@dataclass
class ProxyStat:
    """One row of `show stat` that matters to us."""

    mode: str = ""
    algo: str = ""
    servers: dict[str, dict[str, str]] = field(default_factory=dict)  # name → {bck, slim, scur, status}


def parse_stat(text: str) -> tuple[dict[str, ProxyStat], dict[str, ProxyStat]]:
    """`show stat -1 7 -1` (CSV) → (frontends, backends) by proxy name."""
    text = text.lstrip()
    if text.startswith("# "):
        text = text[2:]
    frontends: dict[str, ProxyStat] = {}
    backends: dict[str, ProxyStat] = {}
    for row in csv.DictReader(io.StringIO(text)):
        px, sv = row.get("pxname"), row.get("svname")
        if not px or not sv:
            continue
        if sv == "FRONTEND":
            frontends[px] = ProxyStat(row.get("mode", ""))
        elif sv == "BACKEND":
            b = backends.setdefault(px, ProxyStat())
            b.mode, b.algo = row.get("mode", ""), row.get("algo", "")
        else:
            backends.setdefault(px, ProxyStat()).servers[sv] = {
                k: row.get(k, "") for k in ("bck", "slim", "scur", "status", "qcur")}
    return frontends, backends


@dataclass
class Snapshot:
    """One batched look at HAProxy on this node: the file, and the runtime if it runs."""

    file: ConfigFile
    running: bool
    servers: dict[str, dict[str, RuntimeServer]] = field(default_factory=dict)
    frontends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    backends_stat: dict[str, ProxyStat] = field(default_factory=dict)
    written: ConfigFile | None = None  # our copy of what we last installed, to describe hand edits

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

    def _config(self, section: Section, render: Any) -> str:
        """`as generated`, or `edited by hand:` and what was edited, from the copy of what
        we last wrote (else from what the running state would render)."""
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
        if self.file.shared_edited:
            changes += line_changes(shared_sections(), self.file.shared)
        changes += [f"+section {s.keyword} {s.name}".rstrip() for s in self.file.unknown_sections]
        if not changes:
            return EDITED if section.edited or self.file.shared_edited else IN_SYNC
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        return f"{EDITED}: {changes[0]}{more}"


def line_changes(before: list[str], after: list[str]) -> list[str]:
    """What changed between two versions of lines, for people: `'old' -> 'new'`, `+'added'`,
    `-'removed'` (digest comments, indentation and blank lines aside)."""
    def meaningful(lines: list[str]) -> list[str]:
        return [line.strip() for line in lines if line.strip() and not DIGEST_RE.match(line.strip())]

    old, new = meaningful(before), meaningful(after)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "replace":
            pairs = list(zip(old[i1:i2], new[j1:j2]))
            out += [f"{a!r} -> {b!r}" for a, b in pairs]
            out += [f"-{a!r}" for a in old[i1 + len(pairs):i2]] + [f"+{b!r}" for b in new[j1 + len(pairs):j2]]
        elif op == "delete":
            out += [f"-{a!r}" for a in old[i1:i2]]
        elif op == "insert":
            out += [f"+{b!r}" for b in new[j1:j2]]
    return out


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


class ReloadRefused(ApplyError):
    """The master tried the new file and went back to the old workers."""


def read_config(path: Path = CONFIG) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ApplyError(f"cannot read {path}: {err}") from None


class HAProxy:
    """HAProxy on this node: observe it, change servers at run time, install the file,
    start and reload it."""

    def __init__(self, node: Node, config: Path = CONFIG):
        self.node = node
        self.config = config
        self.api = RuntimeAPI(node)
        self.written_copy = Path(node.state_dir) / "haproxy" / "haproxy.cfg.written"

    # -- observe

    def running(self) -> bool:
        return pid_alive(PIDFILE) is not None and self.api.reachable()

    def snapshot(self) -> Snapshot:
        file = parse_config(read_config(self.config))
        written = None
        if any(s.edited for s in file.sections) or file.shared_edited:
            try:
                written = parse_config(self.written_copy.read_text())
            except (OSError, UnicodeDecodeError):
                pass
        if not self.running():
            return Snapshot(file, False, written=written)
        servers = parse_servers_state(self.api.command("show servers state", read_only=True))
        frontends, backends = parse_stat(self.api.command("show stat -1 7 -1", read_only=True))
        return Snapshot(file, True, servers, frontends, backends, written)

    # -- the file

    def compose(self, snap: Snapshot, keyword: str, name: str, section: list[str] | None) -> str:
        """The file with one section replaced (or removed, for None) and every other
        section as it is now: each object's own change rewrites its own section."""
        frontends = {n: s.lines for n, s in snap.file.of("frontend").items()} if snap.file.generated else {}
        backends = {n: s.lines for n, s in snap.file.of("backend").items()} if snap.file.generated else {}
        target = frontends if keyword == "frontend" else backends
        if section is None:
            target.pop(name, None)
        else:
            target[name] = section
        return render_config(frontends, backends)

    def check_owned(self, snap: Snapshot) -> None:
        """Refuse to overwrite an HAProxy configuration with proxies we did not write."""
        foreign = snap.file.foreign_proxies
        if foreign:
            raise ApplyError(
                f"{self.config} was not generated by reconcile and defines {', '.join(foreign[:3])}; "
                f"nothing was changed. Move it away (or port it to Frontend/Backend manifests) to let "
                f"reconcile manage HAProxy on this node")

    def install(self, snap: Snapshot, text: str) -> bool:
        """Validate `text` with `haproxy -c` on the temp file and install it atomically."""
        self.check_owned(snap)
        writer = AtomicWriter(self.node)
        if snap.file.text is not None and not snap.file.generated and not BACKUP.exists():
            writer.write(BACKUP, snap.file.text)  # the package's default file, kept once
        changed = writer.write(self.config, text, mode=0o644, validate=lambda path: self._check(path, text))
        writer.write(self.written_copy, text, mode=0o600)  # to tell a hand edit from ours later
        return changed

    def validate_text(self, text: str) -> list[str]:
        """Problems `haproxy -c` finds in `text` (checked in a temp file), for people."""
        try:
            validated_temp(text, lambda path: self._check(path, text), suffix=".cfg")
        except ApplyError as err:
            return [f"node {self.node.name}: {err}"]
        return []

    def _check(self, path: Path, text: str) -> None:
        try:
            self.node.run(["haproxy", "-c", "-f", str(path)], read_only=True, timeout=30)
        except CommandError as err:
            raise ApplyError(f"haproxy -c refused the configuration: {haproxy_errors(err.stderr or err.stdout, text)}") \
                from None

    # -- the process

    def start(self) -> None:
        """Start HAProxy (systemd unit, or master-worker in the background) and wait for
        its admin socket."""
        self.node.runner.guard("write", [str(ADMIN_SOCKET.parent)], read_only=False)
        ADMIN_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        if systemd_running():
            self.node.run(["systemctl", "start", "haproxy"], timeout=60)
        else:
            self.node.run(["haproxy", "-W", "-D", "-S", str(MASTER_SOCKET), "-p", str(PIDFILE), "-f", str(self.config)],
                          timeout=60)
        self._wait(self.running, 10.0, "HAProxy started but its admin socket did not answer")

    def reload(self) -> None:
        """Hitless reload through the master: save the server state, ask the master to
        re-execute with the new file, and wait until a new worker answers the runtime API
        (so that the next `observe` sees the new configuration, not the old worker)."""
        if not MASTER_SOCKET.exists():
            raise ApplyError(f"HAProxy runs without its master socket {MASTER_SOCKET}, so it cannot be reloaded "
                             f"hitlessly; restart it in master-worker mode (`haproxy -W -S {MASTER_SOCKET} ...`, "
                             f"as the Debian unit does)")
        self.save_server_state()
        before = self._master_proc()
        if systemd_running():
            self.node.run(["systemctl", "reload", "haproxy"], timeout=60)
        else:
            self.api.master_command("reload", read_only=False, wait=False)
        deadline = time.monotonic() + 30.0
        while True:
            time.sleep(0.02)
            try:
                after = self._master_proc()
            except ApplyError:
                after = None  # the master is re-executing
            if after is not None and after.reloads > before.reloads:
                break
            if time.monotonic() > deadline:
                raise ApplyError("HAProxy's master did not report the reload within 30s")
        if after.failed > 0 or not after.new_workers:
            raise ReloadRefused(
                "HAProxy refused to load the new configuration and keeps running the previous one "
                "(`haproxy -c` accepted it, so a listener could not be bound: is the address in use "
                "or not on this node?)")
        self._wait(lambda: self.worker_pid() in after.new_workers, 10.0,
                   "HAProxy's new worker did not take over the admin socket within 10s")

    def reload_or_restore(self, snap: Snapshot, binds: list[str] = ()) -> None:
        """Reload; if HAProxy refuses the new file, put the previous one back, so that a
        restart does not fail on what the running HAProxy never accepted. `binds`: the
        listeners this change adds, named in the error."""
        try:
            self.reload()
        except ReloadRefused as err:
            if binds:
                err = ReloadRefused(str(err).replace("a listener could not be bound",
                                                     f"a listener could not be bound ({', '.join(binds)})"))
            if snap.file.text is not None and snap.file.generated:
                AtomicWriter(self.node).write(self.config, snap.file.text, validate=lambda p: self._check(p, snap.file.text or ""))
                AtomicWriter(self.node).write(self.written_copy, snap.file.text, mode=0o600)
                raise ApplyError(f"{err}; the previous {self.config} was put back") from None
            raise

    def worker_pid(self) -> int | None:
        """The PID of the worker answering the admin socket (`show info`)."""
        try:
            m = re.search(r"^Pid: (\d+)$", self.api.command("show info", read_only=True), re.M)
        except ApplyError:
            return None
        return int(m.group(1)) if m else None

    def _master_proc(self) -> MasterProc:
        text = self.api.master_command("show proc; quit", read_only=True)
        return parse_show_proc(text)

    def save_server_state(self) -> None:
        """Dump the runtime server state where `load-server-state-from-file` reads it."""
        text = self.api.command("show servers state", read_only=True)
        if text.startswith("1\n"):
            AtomicWriter(self.node).write(STATE_FILE, text)

    @staticmethod
    def _wait(predicate: Any, seconds: float, message: str) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise ApplyError(message)
            time.sleep(0.05)

    # -- servers at run time

    def wait_idle(self, backend: str, server: str, seconds: float) -> int:
        """Wait until a drained server has no connection in use; the number left."""
        deadline = time.monotonic() + seconds
        while True:
            left = _used_connections(self.api.command(f"show servers conn {backend}", read_only=True), server)
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


@dataclass
class MasterProc:
    """The master CLI's `show proc`: reloads so far, failed ones since the last success,
    and the workers started by the latest (re)load."""

    reloads: int
    failed: int
    new_workers: list[int]


def parse_show_proc(text: str) -> MasterProc:
    m = re.search(r"^\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", text, re.M)
    if not m:
        raise ApplyError(f"unexpected answer from HAProxy's master `show proc`: {text.strip()[:200]!r}")
    workers = [int(w.group(1)) for w in re.finditer(r"^(\d+)\s+worker\s+0\s", text, re.M)]
    return MasterProc(int(m.group(1)), int(m.group(2)), workers)


def _used_connections(text: str, server: str) -> int:
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
            continue
        words = line.split()
        if header and words and words[0].split("/")[-1] == server:
            row = dict(zip(header, words))
            try:
                return int(row.get("used_cur", "0"))
            except ValueError:
                return 0
    return 0


def haproxy_errors(output: str, text: str) -> str:
    """haproxy -c's alerts, with the temp file's line turned into the section it is in."""
    lines = text.splitlines()
    out = []
    for line in output.splitlines():
        if "[ALERT]" not in line or "Fatal errors found" in line or "Error(s) found in configuration file" in line:
            continue
        message = re.sub(r"^\[ALERT\]\s*\(\d+\)\s*:\s*(config\s*:\s*)?", "", line)
        m = re.search(r"parsing \[[^\]]*:(\d+)\]\s*:\s*", message)
        if m:
            n = int(m.group(1))
            header = next((lines[i] for i in range(min(n, len(lines)) - 1, -1, -1)
                           if lines[i][:1] not in (" ", "\t", "#", "")), "")
            where = f"{header.strip() or 'line'} (line {n}): "
            message = where + message[m.end():]
        out.append(message.strip())
    return " | ".join(out[:4]) or output.strip()[-300:] or "(no output)"


# --- watching -------------------------------------------------------------------------------


def file_signature(path: Path = CONFIG) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def runtime_signature(api: RuntimeAPI) -> tuple | None:
    """What a drift of the servers looks like: addresses, weights, admin state, checks."""
    if not api.reachable():
        return None
    try:
        servers = parse_servers_state(api.command("show servers state", read_only=True))
    except ApplyError:
        return None
    return tuple(sorted((s.backend, s.name, s.address, s.port, s.admin, s.weight, s.check_state & CHECK_ENABLED)
                        for by_name in servers.values() for s in by_name.values()))


def watch(node: Node, *, servers: bool, interval: float = 0.2) -> Iterator[str]:
    """Yield a reason when the managed file changes, or (with `servers`) when HAProxy's
    server state changes or HAProxy stops or starts. Polls every `interval` seconds: one
    stat() and one `show servers state`, cheaper than a reload and no inotify needed."""
    api = RuntimeAPI(node, timeout=2.0)
    last_file = file_signature()
    last_state = runtime_signature(api) if servers else None
    while True:
        time.sleep(interval)
        now_file = file_signature()
        if now_file != last_file:
            last_file = now_file
            yield f"{CONFIG} changed"
        if servers:
            now_state = runtime_signature(api)
            if now_state != last_state:
                was_running = last_state is not None
                last_state = now_state
                if now_state is None:
                    yield "HAProxy stopped"
                elif not was_running:
                    yield "HAProxy started"
                else:
                    yield "HAProxy server state changed"
