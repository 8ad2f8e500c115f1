"""HAProxy's runtime API: the admin socket and the master CLI, what they answer, and which
server changes they can make without a reload.

Observing is one `show servers state` and one `show stat` for every backend. Changing
servers (add, remove, weight, address, maxconn, ready/drain/maint, checks) is a batch of
commands on one interactive session (`prompt` mode: one connection for the whole batch,
each answer read up to the prompt), never a reload.
"""
from __future__ import annotations

import csv
import io
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from reconcilers.base import ApplyError, Node, UnsafeValue, one_line
from reconcilers.haproxy.config import ADMIN_SOCKET, EDITED, IN_SYNC, MASTER_SOCKET
from reconcilers.haproxy.render import server_args

REMOVE_WAIT = 10.0  # seconds a drained server may take to finish its requests before deletion
PROMPT = b"\n> "


def runtime_command(cmd: str) -> str:
    """One command of HAProxy's admin socket, as it is: refused (UnsafeValue) when a value
    in it would end it and start another (a newline or ';', the CLI's separators) or be
    quoted differently than in the file (quotes, backslashes)."""
    one_line(cmd, "HAProxy's runtime API", max_length=4096)
    if any(c in cmd for c in ";'\"\\"):
        raise UnsafeValue(f"HAProxy's runtime API: refused to send {cmd!r}: it holds ; or a quote or backslash")
    return cmd


class RuntimeAPI:
    """HAProxy's admin socket (one command per connection, or a `session` for a batch) and
    the master CLI. Every command is reported to the runner (`guard`): in dry-run only
    `show …` may pass."""

    def __init__(self, node: Node, admin: Path = ADMIN_SOCKET, master: Path = MASTER_SOCKET, timeout: float = 10.0):
        self.node, self.admin, self.master, self.timeout = node, admin, master, timeout

    def command(self, cmd: str, *, read_only: bool) -> str:
        self.node.runner.guard("haproxy-api", [runtime_command(cmd)], read_only=read_only)
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

    def checked(self, cmd: str, ok: str = r"^$") -> str:
        """Run a changing command; raise ApplyError unless the answer matches `ok`."""
        answer = self.command(cmd, read_only=False).strip()
        if not re.search(ok, answer, re.S):
            raise ApplyError(f"HAProxy refused `{cmd}`: {answer or '(no answer)'}")
        return answer

    @contextmanager
    def session(self) -> Iterator["Session"]:
        """One connection in interactive mode for a batch of commands."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(str(self.admin))
                cli = Session(self, s)
                s.sendall(b"prompt\n")
                cli.read_answer("prompt")
                yield cli
                try:
                    s.sendall(b"quit\n")
                except OSError:
                    pass
        except (FileNotFoundError, ConnectionRefusedError):
            raise ApplyError(f"HAProxy is not running (nothing answers on {self.admin})") from None

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


class Session:
    """An interactive admin-socket session (`prompt` mode): answers end with "\\n> "."""

    def __init__(self, api: RuntimeAPI, sock: socket.socket):
        self.api, self.sock, self.buffer = api, sock, b""

    def command(self, cmd: str, *, read_only: bool) -> str:
        self.api.node.runner.guard("haproxy-api", [runtime_command(cmd)], read_only=read_only)
        try:
            self.sock.sendall(cmd.encode() + b"\n")
        except OSError as err:
            raise ApplyError(f"lost HAProxy's admin socket sending `{cmd}`: {err.strerror or err}") from None
        return self.read_answer(cmd)

    def checked(self, cmd: str, ok: str = r"^$") -> str:
        answer = self.command(cmd, read_only=False).strip()
        if not re.search(ok, answer, re.S):
            raise ApplyError(f"HAProxy refused `{cmd}`: {answer or '(no answer)'}")
        return answer

    def read_answer(self, cmd: str) -> str:
        while PROMPT not in self.buffer:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise ApplyError(f"HAProxy did not answer `{cmd}` within {self.api.timeout:.0f}s") from None
            except OSError as err:
                raise ApplyError(f"lost HAProxy's admin socket after `{cmd}`: {err.strerror or err}") from None
            if not data:
                raise ApplyError(f"HAProxy closed its admin socket after `{cmd}`")
            self.buffer += data
        answer, _, self.buffer = self.buffer.partition(PROMPT)
        return answer.decode(errors="replace")


# --- what the runtime API answers -----------------------------------------------------------

# srv_admin_state bits (include/haproxy/server-t.h). CMAINT alone only records that the
# file said `disabled`: once set ready at run time the server serves although it stays set.
ADMIN_MAINT = 0x01 | 0x02 | 0x20  # forced, inherited, resolution
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited
CHECK_ENABLED = 0x04  # srv_check_state: CHK_ST_ENABLED
CHECK_CONFIGURED = 0x02  # srv_check_state: CHK_ST_CONFIGURED (`check` was given)


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
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    at = {name: i for i, name in enumerate(header)}
    if "pxname" not in at or "svname" not in at:
        return frontends, backends
    px_i, sv_i = at["pxname"], at["svname"]
    wanted = [(k, at[k]) for k in ("bck", "slim", "scur", "status", "qcur") if k in at]
    mode_i, algo_i = at.get("mode"), at.get("algo")
    for row in rows:  # thousands of servers: index the columns, no dict per row
        if len(row) <= max(px_i, sv_i):
            continue
        px, sv = row[px_i], row[sv_i]
        if not px or not sv:
            continue
        if sv == "FRONTEND":
            frontends[px] = ProxyStat(_col(row, mode_i))
        elif sv == "BACKEND":
            b = backends.setdefault(px, ProxyStat())
            b.mode, b.algo = _col(row, mode_i), _col(row, algo_i)
        else:
            backends.setdefault(px, ProxyStat()).servers[sv] = {k: _col(row, i) for k, i in wanted}
    return frontends, backends


def _col(row: list[str], index: int | None) -> str:
    return row[index] if index is not None and index < len(row) else ""


def used_connections(text: str) -> dict[str, int]:
    """`show servers conn BACKEND` → server → connections in use (`used_cur`)."""
    out: dict[str, int] = {}
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
            continue
        words = line.split()
        if header and words:
            row = dict(zip(header, words))
            try:
                out[words[0].split("/")[-1]] = int(row.get("used_cur", "0"))
            except ValueError:
                continue
    return out


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


# --- which server changes the runtime API makes ------------------------------------------------


@dataclass
class ServerOp:
    """One server's runtime change: `commands` in order, or a drain-and-delete (`remove`)."""

    server: str
    action: str  # add | update | remove
    commands: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.commands) if self.commands else f"drain, then del server (waits up to {REMOVE_WAIT:.0f}s)"


@dataclass
class BackendPlan:
    """How one Backend change is carried out: why a reload is needed (empty: none), and
    the runtime API operations."""

    reload: list[str] = field(default_factory=list)
    ops: list[ServerOp] = field(default_factory=list)


def plan_backend(
    name: str,
    observed: dict[str, Any] | None,
    desired: dict[str, Any],
    ignored: set[str] = frozenset(),  # type: ignore[assignment]
    runtime: dict[str, RuntimeServer] | None = None,
) -> BackendPlan:
    """Split the difference into runtime server operations and reasons to reload.

    `ignored` holds server fields an operator may change at run time (`spec.ignore`): they
    are set when a server is added, never corrected afterwards.
    """
    plan = BackendPlan()
    if observed is None:
        plan.reload.append(f"backend {name} is not loaded")
        return plan
    for key in ("mode", "balance", "healthCheck", "timeouts"):
        if observed.get(key) != desired[key]:
            plan.reload.append(f"{key} changed")
    if observed.get("config") != IN_SYNC:
        plan.reload.append("the file was edited by hand" if str(observed.get("config")).startswith(EDITED)
                           else str(observed.get("config")))
    have, want = observed.get("servers", {}), desired["servers"]
    check = desired["healthCheck"]
    # Adds first and removals last, so capacity never dips below what both agree on.
    for server in sorted(set(want) - set(have)):
        w = want[server]
        commands = [f"add server {name}/{server} {' '.join(server_args(w, check))}"]
        if w["check"] and check["type"] != "none":
            commands.append(f"enable health {name}/{server}")
        commands.append(f"set server {name}/{server} state {w['state']}")  # dynamic servers start in maint
        plan.ops.append(ServerOp(server, "add", commands))
    for server in sorted(set(want) & set(have)):
        h, w = have[server], want[server]
        commands = []
        if h["backup"] != w["backup"]:
            plan.reload.append(f"servers.{server}.backup changed")
        if (h["address"], h["port"]) != (w["address"], w["port"]):
            commands.append(f"set server {name}/{server} addr {w['address']} port {w['port']}")
        if h["weight"] != w["weight"] and "weight" not in ignored:
            commands.append(f"set server {name}/{server} weight {w['weight']}")
        if h.get("maxconn") != w.get("maxconn"):
            commands.append(f"set maxconn server {name}/{server} {w.get('maxconn', 0)}")
        if h["check"] != w["check"]:
            configured = runtime is None or server not in runtime or runtime[server].check_state & CHECK_CONFIGURED
            if w["check"] and not configured:
                plan.reload.append(f"servers.{server} needs health checks configured")
            else:
                commands.append(f"{'enable' if w['check'] else 'disable'} health {name}/{server}")
        if h["state"] != w["state"] and "state" not in ignored:
            commands.append(f"set server {name}/{server} state {w['state']}")
        if commands:
            plan.ops.append(ServerOp(server, "update", commands))
    for server in sorted(set(have) - set(want)):
        plan.ops.append(ServerOp(server, "remove"))
    if plan.reload:
        # The reload loads servers from the new file; only changes to servers that stay
        # are made at run time first, so the saved state carries them over.
        plan.ops = [op for op in plan.ops if op.action == "update"]
    return plan


def answer_ok(command: str) -> str:
    """The answer a successful server command gives (a regular expression)."""
    return r"^New server registered\." if command.startswith("add server") else r"^$|changed from|no need to change"
