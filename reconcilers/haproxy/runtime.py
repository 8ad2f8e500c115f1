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
from reconcilers.haproxy.config import ADMIN_SOCKET, MASTER_SOCKET

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

    def send_payload(self, text: str) -> str:
        """A command with a payload (`... <<` then lines); an empty line ends the payload.
        The caller reports it to the runner (without the payload)."""
        try:
            self.sock.sendall(text.encode() + b"\n")
        except OSError as err:
            raise ApplyError(f"lost HAProxy's admin socket: {err.strerror or err}") from None
        return self.read_answer(text.split("\n", 1)[0])

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
    fqdn: str = ""  # the host name of a server given by name

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
                                   int(row["srv_admin_state"]), int(row["srv_uweight"]), int(row["srv_check_state"]),
                                   row.get("srv_fqdn", "-").strip("-"))
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


def all_workers(text: str) -> list[int]:
    """Every worker of the master CLI's `show proc`: the current ones and the old ones
    still finishing their connections after a reload."""
    return [int(w.group(1)) for w in re.finditer(r"^(\d+)\s+worker\s+\d+\s", text, re.M)]


def current_connections(show_info: str) -> int:
    """`CurrConns` of a worker's `show info`: its client connections (HAProxy does not
    count the CLI's own)."""
    m = re.search(r"^CurrConns:\s*(\d+)\s*$", show_info, re.M)
    if not m:
        raise ApplyError(f"HAProxy's `show info` has no CurrConns: {show_info.strip()[:200]!r}")
    return int(m.group(1))


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


# Server keywords `add server` takes in HAProxy 2.6 (management.txt, "add server").
DYNAMIC_KEYWORDS = frozenset("""
agent-addr agent-check agent-inter agent-port agent-send allow-0rtt alpn addr backup ca-file check check-alpn
check-proto check-send-proxy check-sni check-ssl check-via-socks4 ciphers ciphersuites crl-file crt disabled
downinter enabled error-limit fall fastinter force-sslv3 force-tlsv10 force-tlsv11 force-tlsv12 force-tlsv13 id
inter maxconn maxqueue minconn no-ssl-reuse no-sslv3 no-tlsv10 no-tlsv11 no-tlsv12 no-tlsv13 no-tls-tickets npn
observe on-error on-marked-down on-marked-up pool-low-conn pool-max-conn pool-purge-delay port proto
proxy-v2-options rise send-proxy send-proxy-v2 send-proxy-v2-ssl send-proxy-v2-ssl-cn slowstart sni source ssl
ssl-max-ver ssl-min-ver tfo tls-tickets track usesrc verify verifyhost weight ws
""".split())
# Keywords among those that take a value (the value is not a keyword to check).
_TAKES_VALUE = frozenset("""
agent-addr agent-inter agent-port agent-send alpn addr ca-file check-alpn check-proto check-sni ciphers
ciphersuites crl-file crt downinter error-limit fall fastinter id inter maxconn maxqueue minconn observe on-error
on-marked-down on-marked-up pool-low-conn pool-max-conn pool-purge-delay port proto proxy-v2-options rise
slowstart sni source ssl-max-ver ssl-min-ver track usesrc verify verifyhost weight ws
""".split())


def server_args(server: dict[str, Any]) -> list[str] | None:
    """The arguments of `add server BE/NAME` for a normalized server, or None when the
    runtime API cannot make it as the file says (a host name: dynamic servers never
    resolve; a keyword `add server` does not take)."""
    if "host" in server or server.get("address") is None:
        return None
    address = str(server["address"])
    if ":" in address:
        address = f"[{address}]"
    args = [f"{address}:{server['port']}" if server.get("port") else address, "weight", str(server["weight"])]
    if server.get("backup"):
        args.append("backup")
    if "maxconn" in server:
        args += ["maxconn", str(server["maxconn"])]
    if server.get("check"):
        args.append("check")
    options = server.get("options", "").split()
    i = 0
    while i < len(options):
        if options[i] not in DYNAMIC_KEYWORDS:
            return None
        i += 2 if options[i] in _TAKES_VALUE else 1
    return args + options


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
    for key in ("section", "from", "lines", "shared"):
        if observed.get(key) != desired.get(key):
            plan.reload.append(f"{key} changed")
    have, want = observed.get("servers", {}), desired.get("servers", {})
    # Dynamic servers take nothing from `default-server`: with one, the file alone says it right.
    inherits = any(line.split()[:1] == ["default-server"] for line in desired.get("lines", []))
    # Adds first and removals last, so capacity never dips below what both agree on.
    for server in sorted(set(want) - set(have)):
        w = want[server]
        args = None if inherits else server_args(w)
        if args is None:
            plan.reload.append(f"servers.{server} can only be added by a reload")
            continue
        commands = [f"add server {name}/{server} {' '.join(args)}"]
        if w.get("check"):
            commands.append(f"enable health {name}/{server}")
        commands.append(f"set server {name}/{server} state {w['state']}")  # dynamic servers start in maint
        plan.ops.append(ServerOp(server, "add", commands))
    for server in sorted(set(want) & set(have)):
        h, w = have[server], want[server]
        commands = []
        for key in ("backup", "options", "host"):
            if h.get(key) != w.get(key):
                plan.reload.append(f"servers.{server}.{key} changed")
        if "address" in w and (h.get("address"), h.get("port")) != (w.get("address"), w.get("port")):
            if isinstance(w.get("port"), int) or w.get("port") is None:
                port = f" port {w['port']}" if w.get("port") else ""
                commands.append(f"set server {name}/{server} addr {w['address']}{port}")
            else:
                plan.reload.append(f"servers.{server}.address changed")
        elif "host" in w and h.get("port") != w.get("port"):
            plan.reload.append(f"servers.{server}.port changed")
        if h.get("weight") != w.get("weight") and "weight" not in ignored:
            commands.append(f"set server {name}/{server} weight {w['weight']}")
        if h.get("maxconn") != w.get("maxconn"):
            commands.append(f"set maxconn server {name}/{server} {w.get('maxconn', 0)}")
        if h.get("check") != w.get("check"):
            configured = runtime is None or server not in runtime or runtime[server].check_state & CHECK_CONFIGURED
            if w.get("check") and not configured:
                plan.reload.append(f"servers.{server} needs health checks configured")
            else:
                commands.append(f"{'enable' if w.get('check') else 'disable'} health {name}/{server}")
        if h.get("state") != w.get("state") and "state" not in ignored:
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
