"""HAProxy on one node as a process: look at it, check and install its file, start it and
reload it through its master.

The file is checked by `haproxy -c` before it is installed: on the temp file beside the
target (apply) or in a temp folder (validate, dry-run), once per distinct content
(`native_check`). A refusal names the sections it is about, so that the reconciler can pin
it on objects. A reload goes through the master (`-W -S`): hitless, the server state saved
first so that runtime drains and weights survive it; if the master refuses the new file
(a port in use, which `haproxy -c` cannot see), the previous file is put back.
"""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from reconcilers.base import (
    ApplyError, AtomicWriter, CommandError, Key, Node, Refusal, enable_unit, native_check, pid_alive, start_unit,
    systemd_running, unit_field, unit_states, validated_temp, wait_until,
)
from reconcilers.haproxy.config import (
    ADMIN_SOCKET, BACKUP, CONFIG, KIND_OF, MASTER_SOCKET, PIDFILE, STATE_FILE, ConfigFile, SectionKey, parse_config,
    read_config,
    section_at,
)
from reconcilers.haproxy.parse import Snapshot
from reconcilers.haproxy.runtime import MasterProc, RuntimeAPI, all_workers, current_connections, \
    parse_servers_state, parse_show_proc, parse_stat, used_connections


NO_LISTENER = "will not start (no listener)"
UNIT = "haproxy.service"
# A server state file with no server in it (`show servers state` of an empty HAProxy).
EMPTY_STATE = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
               "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
               "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
               "srv_check_addr srv_agent_addr srv_agent_port\n")


class ReloadRefused(ApplyError):
    """The master tried the new file and went back to the old workers."""


class Refused(ApplyError):
    """`haproxy -c` refused a file; `refusals` name the objects where it could tell."""

    def __init__(self, refusals: list[Refusal]):
        self.refusals = refusals
        super().__init__("; ".join(r.message for r in refusals))


# --- haproxy -c's messages, pinned on sections -----------------------------------------------

_LINE = re.compile(r"\[[^\]\n]*:(\d+)\]\s*:\s*")
_PROXY = re.compile(r"\b(?:[Pp]roxy|frontend|backend|listen) '([^']+)'")


def _alerts(output: str) -> list[str]:
    out = []
    for line in output.splitlines():
        if "[ALERT]" not in line or "Fatal errors found" in line or "Error(s) found in configuration file" in line:
            continue
        out.append(re.sub(r"^\[ALERT\]\s*\(\d+\)\s*:\s*(config\s*:\s*)?", "", line).strip())
    return out


def refusals_from(output: str, text: str, owners: dict[SectionKey, Key] | None = None) -> list[Refusal]:
    """haproxy -c's alerts as refusals: the temp file's line turned into the section it is
    in, and the objects it names (the owner of a section's line, or a proxy named in the
    message). `owners` maps sections to objects (default: proxies to their kinds)."""
    if owners is None:
        owners = {s.key: (KIND_OF[s.keyword], s.name) for s in parse_config(text).sections if s.keyword in KIND_OF}
    proxies: dict[str, list[Key]] = {}
    for (keyword, name), key in owners.items():
        if keyword in KIND_OF:
            proxies.setdefault(name, []).append(key)
    out = []
    for alert in _alerts(output):
        objects: list[Key] = []
        message = alert.removeprefix("parsing ")
        m = _LINE.search(message)
        if m:
            n = int(m.group(1))
            where = section_at(text, n)
            label = f"{where[0]} {where[1]}".strip() if where else "line"
            message = f"{label} (line {n}): " + message[m.end():]
            if where and where in owners:
                objects.append(owners[where])
        for name in _PROXY.findall(alert):
            objects += [k for k in proxies.get(name, []) if k not in objects]
        out.append(Refusal(message.strip(), tuple(objects)))
    return out or [Refusal(output.strip()[-300:] or "(no output)")]


def haproxy_errors(output: str, text: str) -> str:
    """haproxy -c's alerts for people, one line."""
    return " | ".join(r.message for r in refusals_from(output, text)[:4])


def file_digest(text: str) -> str:
    """How an imported file is recognised (the HAProxy manifest's `imported-from` label)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def loaded_copy(node: Node) -> Path:
    """What the running HAProxy last loaded: section digests (see HAProxy._loaded)."""
    return Path(node.state_dir) / "haproxy" / "loaded.json"


def section_digests(file: ConfigFile) -> dict[str, str]:
    """"keyword name" → digest of the section's lines, `server` lines aside (those change at
    run time, through the runtime API, which is compared to the file on its own)."""
    out = {}
    for s in file.sections:
        lines = [d for d in s.directives() if d.split()[:1] != ["server"]]
        out[f"{s.keyword} {s.name}"] = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]
    return out


def state_file(text: str | None) -> Path:
    """Where a configuration keeps the server state across reloads (`server-state-file`,
    which only `global` takes)."""
    m = re.search(r"^[ \t]*server-state-file[ \t]+(\S+)", text or "", re.M)
    if not m:
        return STATE_FILE
    path = Path(m.group(1))
    return path if path.is_absolute() else Path("/var/lib/haproxy") / path


# --- the process -----------------------------------------------------------------------------


class HAProxy:
    """HAProxy on this node: observe it, check and install the file, start and reload it."""

    def __init__(self, node: Node, config: Path = CONFIG, adopt: str | None = None, enforce: bool = False):
        self.node = node
        self.config = config
        self.adopt = adopt  # digest of a file the manifests were imported from: reconcile may take it over
        self.enforce = enforce  # metadata.drift: enforce: unmask/enable a unit an operator held back
        self.api = RuntimeAPI(node)
        self.written_copy = Path(node.state_dir) / "haproxy" / "haproxy.cfg.written"
        self.loaded_copy = loaded_copy(node)

    # -- observe

    def running(self) -> bool:
        return pid_alive(PIDFILE) is not None and self.api.reachable()

    def snapshot(self) -> Snapshot:
        file = parse_config(read_config(self.config))
        units = unit_field(unit_states(self.node, [UNIT])) if systemd_running() else None
        if not self.running():
            return Snapshot(file, False, units=units)
        servers = parse_servers_state(self.api.command("show servers state", read_only=True))
        frontends, backends = parse_stat(self.api.command("show stat -1 7 -1", read_only=True))
        return Snapshot(file, True, servers, frontends, backends, units)

    def stat_rows(self) -> dict[str, dict[str, dict[str, str]]] | None:
        """`show stat` by proxy and row, for health; None when HAProxy does not run."""
        from reconcilers.haproxy.health import parse_stat_rows

        if not self.running():
            return None
        return parse_stat_rows(self.api.command("show stat -1 7 -1", read_only=True))

    def preview(self) -> tuple[str, list[str]]:
        """For the plan: "reload" or "start", and notes on whether the file is ours to
        replace. Read-only."""
        file = parse_config(read_config(self.config))
        notes = []
        if file.foreign_proxies and self.adopts(file):
            notes.append(f"takes over {self.config}, which the manifests were imported from "
                         f"(a copy is kept as {BACKUP.name})")
        elif file.foreign_proxies:
            notes.append(f"will be refused: {self.config} was not generated by reconcile and defines "
                         f"{', '.join(file.foreign_proxies[:3])}")
        elif file.text is not None and not file.generated:
            notes.append(f"replaces {self.config}, which has no proxies (a copy is kept as {BACKUP.name})")
        return ("reload" if self.running() else "start"), notes

    def adopts(self, file: ConfigFile) -> bool:
        """True when `file`, which reconcile did not write, is the one the node's manifests
        were imported from (`reconcile import haproxy`): reconcile takes it over."""
        return self.adopt is not None and file.text is not None and not file.generated and \
            file_digest(file.text) == self.adopt

    def check_owned(self, snap: Snapshot) -> None:
        """Refuse to overwrite an HAProxy configuration with proxies we did not write (unless
        the manifests were imported from exactly that file)."""
        foreign = snap.file.foreign_proxies
        if foreign and not self.adopts(snap.file):
            raise ApplyError(
                f"{self.config} was not generated by reconcile and defines {', '.join(foreign[:3])}; "
                f"nothing was changed. Import it (`reconcile import haproxy --live`: manifests imported from "
                f"exactly this file take it over), or move it away, to let reconcile manage HAProxy on this node")

    # -- the file

    def check(self, text: str, owners: dict[SectionKey, Key] | None = None) -> list[Refusal]:
        """What `haproxy -c` refuses in `text`, checked in a temp file. Read-only: a server
        state file apply would create is stood in for by an empty one."""
        state = state_file(text)
        with tempfile.NamedTemporaryFile("w", prefix="reconcile-check-", suffix=".state") as stand_in:
            if not state.exists():
                stand_in.write(EMPTY_STATE)
                stand_in.flush()
                text = text.replace(f"server-state-file {state}", f"server-state-file {stand_in.name}")

            def run() -> list[Refusal]:
                found: list[Refusal] = []
                validated_temp(text, lambda path: found.extend(self._check_file(path, text, owners)), suffix=".cfg")
                return found
            return native_check(self.node, "haproxy", text, run)

    def install(self, snap: Snapshot, text: str, owners: dict[SectionKey, Key] | None = None,
                secret: bool = False) -> bool:
        """Install `text` atomically once `haproxy -c` accepted the temp file (raises
        `Refused` otherwise, installing nothing). 0600 when it holds a secret. False when it
        was there already."""
        self.check_owned(snap)
        writer = AtomicWriter(self.node)
        state = state_file(text)
        if not state.exists():  # HAProxy warns about a missing one (an error under zero-warning)
            writer.write(state, EMPTY_STATE)
        if snap.file.text is not None and not snap.file.generated and not BACKUP.exists():
            writer.write(BACKUP, snap.file.text)  # the package's default file, kept once

        def validate(path: Path) -> None:
            refusals = native_check(self.node, "haproxy", text, lambda: self._check_file(path, text, owners))
            if refusals:
                raise Refused(refusals)

        # The copy first (to tell a hand edit from ours later): a run killed right after the
        # file is installed must leave a file that is known as ours, so that what it has and
        # the running HAProxy lacks is pending work, not drift.
        writer.write(self.written_copy, text, mode=0o600)
        try:
            return writer.write(self.config, text, mode=0o600 if secret else 0o644, validate=validate)
        except BaseException:
            if snap.file.text is not None:
                writer.write(self.written_copy, snap.file.text, mode=0o600)
            raise

    def _check_file(self, path: Path, text: str, owners: dict[SectionKey, Key] | None = None) -> list[Refusal]:
        try:
            self.node.run(["haproxy", "-c", "-f", str(path)], read_only=True, timeout=30)
        except CommandError as err:
            if err.rc == 2 and NO_LISTENER in err.stdout + err.stderr:
                return []  # valid; the reconciler stops HAProxy rather than run it with nothing to serve
            return refusals_from(err.stderr or err.stdout, text, owners)
        return []

    # -- the process

    def start(self) -> None:
        """Start HAProxy (systemd unit, or master-worker in the background) and wait for
        its admin socket."""
        self.node.runner.guard("write", [str(ADMIN_SOCKET.parent)], read_only=False)
        ADMIN_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        if systemd_running():  # an operator's hold on the unit raises Held (base.start_unit)
            start_unit(self.node, UNIT, self.enforce)
        else:
            self.node.run(["haproxy", "-W", "-D", "-S", str(MASTER_SOCKET), "-p", str(PIDFILE), "-f", str(self.config)],
                          timeout=60, cwd="/")
        self._wait(self.running, 10.0, "HAProxy started but its admin socket did not answer")
        self._loaded()

    def enable(self) -> None:
        """Have haproxy.service start at boot (systemd), unless an operator holds it back
        (raises Held, see base.enable_unit)."""
        if systemd_running():
            enable_unit(self.node, unit_states(self.node, [UNIT])[UNIT], self.enforce)

    def reload(self) -> None:
        """Hitless reload through the master: save the server state, ask the master to
        re-execute with the new file, and wait until a new worker answers the runtime API
        (so that the next `observe` sees the new configuration, not the old worker)."""
        if not MASTER_SOCKET.exists():
            raise ApplyError(f"HAProxy runs without its master socket {MASTER_SOCKET}, so it cannot be reloaded "
                             f"hitlessly; restart it in master-worker mode (`haproxy -W -S {MASTER_SOCKET} ...`, "
                             f"as the Debian unit does)")
        self.save_server_state()
        before = self.master_proc()
        if systemd_running():
            self.node.run(["systemctl", "reload", "haproxy"], timeout=60)
        else:
            self.api.master_command("reload", read_only=False, wait=False)

        def reloaded() -> MasterProc | None:
            try:
                after = self.master_proc()
            except ApplyError:
                return None  # the master is re-executing
            return after if after.reloads > before.reloads else None

        after = wait_until(reloaded, 30.0, interval=0.02)
        if after is None:
            raise ApplyError("HAProxy's master did not report the reload within 30s")
        if after.failed > 0 or not after.new_workers:
            raise ReloadRefused(
                "HAProxy refused to load the new configuration and keeps running the previous one "
                "(`haproxy -c` accepted it, so a listener could not be bound: is the address in use "
                "or not on this node?)")
        self._wait(lambda: self.worker_pid() in after.new_workers, 10.0,
                   "HAProxy's new worker did not take over the admin socket within 10s")
        self._loaded()

    def _loaded(self) -> None:
        """Remember what HAProxy just (re)loaded: the file alone cannot tell whether a change
        in it runs yet (observe compares the two: a run killed between installing the file
        and reloading leaves pending work, not a file that only looks applied). A digest per
        section, so that no secret of the file is copied."""
        text = read_config(self.config)
        if text is not None:
            AtomicWriter(self.node).write(self.loaded_copy, json.dumps(section_digests(parse_config(text))), mode=0o600)

    def reload_or_restore(self, previous: str | None, binds: list[str] = ()) -> None:
        """Reload; if HAProxy refuses the new file, put `previous` back (the file the
        running HAProxy accepted), so that a restart does not fail on it. `binds`: the
        listeners the batch adds, named in the error."""
        try:
            self.reload()
        except ReloadRefused as err:
            if binds:
                err = ReloadRefused(str(err).replace("a listener could not be bound",
                                                     f"a listener could not be bound ({', '.join(binds)})"))
            if previous is not None:
                writer = AtomicWriter(self.node)
                writer.write(self.config, previous)
                writer.write(self.written_copy, previous, mode=0o600)
                raise ApplyError(f"{err}; the previous {self.config} was put back") from None
            raise

    def stop(self) -> None:
        """Stop HAProxy softly (workers finish their connections): it has nothing left to
        serve."""
        if systemd_running():
            self.node.run(["systemctl", "stop", "haproxy"], timeout=60)
            return
        pid = pid_alive(PIDFILE)
        if pid is not None:
            self.node.run(["kill", "-USR1", str(pid)], timeout=10)
            self._wait(lambda: pid_alive(PIDFILE) is None, 30.0, "HAProxy did not stop within 30s")

    def worker_pid(self) -> int | None:
        """The PID of the worker answering the admin socket (`show info`)."""
        try:
            m = re.search(r"^Pid: (\d+)$", self.api.command("show info", read_only=True), re.M)
        except ApplyError:
            return None
        return int(m.group(1)) if m else None

    def client_connections(self) -> int:
        """Client connections over every worker, old ones included (through the master
        CLI); the admin socket's worker alone when there is no master socket."""
        if not self.api.master.exists():
            return current_connections(self.api.command("show info", read_only=True))
        pids = all_workers(self.api.master_command("show proc; quit", read_only=True))
        return sum(current_connections(self.api.master_command(f"@!{pid} show info; quit", read_only=True))
                   for pid in pids)

    def master_proc(self) -> MasterProc:
        return parse_show_proc(self.api.master_command("show proc; quit", read_only=True))

    def save_server_state(self) -> None:
        """Dump the runtime server state where `load-server-state-from-file` reads it (the
        global `server-state-file`: reconcile's, or the operator's)."""
        text = self.api.command("show servers state", read_only=True)
        if text.startswith("1\n"):
            AtomicWriter(self.node).write(state_file(read_config(self.config)), text)

    @staticmethod
    def _wait(predicate: Callable[[], Any], seconds: float, message: str) -> None:
        if not wait_until(predicate, seconds):
            raise ApplyError(message)

    def wait_idle(self, backend: str, servers: list[str], seconds: float) -> dict[str, int]:
        """Wait until drained servers have no connection in use; those still busy, with
        how many. One `show servers conn` per poll for the whole backend."""
        busy: dict[str, int] = {}

        def idle() -> bool:
            used = used_connections(self.api.command(f"show servers conn {backend}", read_only=True))
            busy.clear()
            busy.update({s: used[s] for s in servers if used.get(s)})
            return not busy

        wait_until(idle, seconds)
        return busy
