"""The `Lab`: build, enter and tear down the nodes of one lab (see the package docstring)."""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from controller.lab import config, systemd_node
from controller.lab.holder import OVERLAID

HOLDER = Path(__file__).with_name("holder.py")
CHECKOUT = Path(__file__).resolve().parents[2]  # where controller/ lives: visible in every node
HOLDER_SUFFIX = "/controller/lab/holder.py"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_DIR = "reconcile-lab"


class LabError(Exception):
    """The lab could not do what was asked; the message says what and where."""


class NodeCommandError(LabError, subprocess.CalledProcessError):
    """A command inside a node exited non-zero (with check=True)."""

    def __init__(self, node: str, result: subprocess.CompletedProcess[str]) -> None:
        subprocess.CalledProcessError.__init__(self, result.returncode, result.args, result.stdout, result.stderr)
        self.node = node

    def __str__(self) -> str:
        tail = lambda s: (s or "").strip()[-2000:]  # noqa: E731
        return (f"{self.node}: {' '.join(map(str, self.cmd))} exited {self.returncode}\n"
                f"--- stdout\n{tail(self.stdout)}\n--- stderr\n{tail(self.stderr)}")


class NodeProcess(subprocess.Popen):
    """A process started in a node by `Lab.popen`. terminate()/kill() reach the command
    itself: nsenter, the Popen's own process, forks it and does not forward signals."""

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            _signal_command(self.pid, sig)


def _signal_command(nsenter_pid: int, sig: int) -> None:
    """Signal what nsenter started (its process group, but not nsenter itself, which then
    reaps its child and exits with the child's status). Killing nsenter first would leave
    its child a zombie of the host's init, not of the node's."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != nsenter_pid:
            fields = _stat(int(entry.name))
            if fields and int(fields[2]) == nsenter_pid:  # its process group
                members.append(int(entry.name))
    for pid in members or [nsenter_pid]:  # none yet: nsenter has not forked, stop it there
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Node:
    name: str
    address: str
    pid: int = 0  # the node's PID 1 (its holder, or systemd) as the host sees it
    start: int = 0  # its start time (/proc/PID/stat field 22): a reused PID does not match
    init: str = "holder"  # holder (holder.py, no init system) | systemd (systemd_node.py)

    @property
    def alive(self) -> bool:
        return self.pid > 0 and _proc_start(self.pid) == self.start


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: [0] state, [2] process group, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """Start time of a live (not zombie) process, None when there is none."""
    fields = _stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _run(argv: Sequence[str], *, input: str | None = None) -> None:
    r = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise LabError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")


def venv_bin() -> Path:
    """The folder holding the `reconcile` console script of this installation."""
    here = Path(sys.executable).parent
    if (here / "reconcile").exists():
        return here
    found = shutil.which("reconcile")
    return Path(found).parent if found else Path(sys.prefix) / "bin"


class Lab:
    """One lab: a set of nodes joined by a bridge, recorded under /srv/reconcile-lab/<name>."""

    def __init__(self, name: str = config.DEFAULT_NAME, *, base: Path = config.LAB_BASE) -> None:
        if not config.NAME_RE.fullmatch(name):
            raise LabError(f"lab name {name!r}: use [a-z][a-z0-9-]*, at most 24 characters")
        self.name = name
        self.root = Path(base) / name
        self._record: dict[str, Any] | None = None
        self._wrappers: list[subprocess.Popen] = []  # unshare processes this object started

    # -- what the lab is -------------------------------------------------------------------
    @property
    def shared(self) -> Path:
        """A folder at the same path on the host and in every node (for repos, manifests)."""
        return self.root / "shared"

    @property
    def switch(self) -> str:
        """Name of the network namespace holding the lab's bridge (`br0`)."""
        return f"{self.name}-sw"

    def netns(self, node: str) -> str:
        """Name of the node's network namespace, for `ip -n NAME ...` from the host."""
        return self._netns(self._node(node).name)

    def _netns(self, node: str) -> str:
        return f"{self.name}-{node}"

    @property
    def nodes(self) -> list[str]:
        return [n["name"] for n in self.record["nodes"]]

    @property
    def domain_controller(self) -> bool:
        return bool(self.record.get("domain_controller"))

    @property
    def sftp_server(self) -> str | None:
        """The node running the lab's SFTP server (lab up with sftp=True), else None."""
        return self.record.get("sftp")

    def address(self, node: str) -> str:
        return self._node(node).address

    def address6(self, node: str) -> str:
        """The node's IPv6 address on eth0 (2001:db8::/64)."""
        return config.address6(self._node(node).address)

    def pid(self, node: str) -> int:
        """Host PID of the node's PID 1, for `nsenter -t PID -n -m -u -i -p`."""
        return self._node(node).pid

    def init(self, node: str) -> str:
        """What the node's PID 1 is: "systemd" (lab up with systemd=True, lb nodes) or
        "holder" (an init-less node, holder.py)."""
        return self._node(node).init

    def exists(self) -> bool:
        return (self.root / "lab.json").exists()

    @property
    def record(self) -> dict[str, Any]:
        if self._record is None:
            try:
                self._record = json.loads((self.root / "lab.json").read_text())
            except FileNotFoundError:
                raise LabError(f"lab {self.name!r} is not up (no {self.root}/lab.json)") from None
        return self._record

    def _save(self) -> None:
        tmp = self.root / "lab.json.tmp"
        tmp.write_text(json.dumps(self._record, indent=2) + "\n")
        tmp.rename(self.root / "lab.json")

    def _node(self, node: str) -> Node:
        for n in self.record["nodes"]:
            if n["name"] == node:
                return Node(**n)
        raise LabError(f"lab {self.name!r} has no node {node!r} (nodes: {', '.join(self.nodes)})")

    # -- up and down -----------------------------------------------------------------------
    def up(self, nodes: int = 2, domain_controller: bool = False, *, systemd: bool = False, sftp: bool = False,
           ephemeral: bool = False, timeout: float = 120.0) -> Lab:
        """Build the lab from nothing (a stale lab of the same name is torn down first).
        `systemd`: nodes lb1..lbN boot a real systemd (systemd_node.py); the DC does not.
        `sftp` starts an SFTP server in the last lb node (controller/lab/sftp.py).
        `ephemeral` marks a test's lab: `sweep_orphans` removes it once its owner is gone."""
        if not 1 <= nodes <= config.MAX_NODES:
            raise LabError(f"--nodes {nodes}: between 1 and {config.MAX_NODES}")
        self.down(purge=False)  # an operator's files in the shared folder survive a rebuild
        init = "systemd" if systemd else "holder"
        names = [(f"lb{i}", config.lb_address(i), init) for i in range(1, nodes + 1)]
        if domain_controller:
            names.append((config.DC_NODE, config.DC_ADDRESS, "holder"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._record = {
            "name": self.name, "state": "starting", "created": time.time(),
            "owner": {"pid": os.getpid(), "start": _proc_start(os.getpid())},
            "ephemeral": ephemeral, "domain_controller": domain_controller, "systemd": systemd,
            "nodes": [asdict(Node(n, a, init=i)) for n, a, i in names],
        }
        if sftp:
            from controller.lab import sftp as sftp_server

            self._record["sftp"] = sftp_server.server_node([n for n, _a, _i in names])
        self._save()  # first: a run killed from here on is found and cleaned by the next up
        try:
            self.shared.mkdir(exist_ok=True)
            self._authkey = secrets.token_bytes(256)  # the lab's Corosync authkey, in every node
            if sftp:  # first: every node's prepared files hold the server's host key
                sftp_server.make_keys(self.root / "sftp")
            booting = [n["name"] for n in self.record["nodes"] if n["init"] == "systemd"]
            for node in booting:  # their network exists before they boot, as on a real host
                _run(["ip", "netns", "add", self._netns(node)])
            self._start_nodes(timeout)
            self._wire()
            started: dict[str, float] = {}
            for node in booting:
                systemd_node.prepare(self, node, self._node_files(node))
                started[node] = time.monotonic()
                systemd_node.start(self, node)  # returns at once; the node boots meanwhile
            self._record["state"] = "up"
            self._save()
            if domain_controller:
                from controller.lab import dc

                dc.start(self, timeout=timeout)
            for n in self.record["nodes"]:
                if n["init"] == "systemd":
                    n["pid"] = systemd_node.init_pid(self, n["name"])
                    n["start"] = _proc_start(n["pid"])
                    self._save()
            for node in booting:  # they boot in parallel: each was started above
                # systemd's own figure (start of PID 1 to `running`): the wait above
                # may include the DC's start
                boot = systemd_node.wait_booted(self, node, timeout=max(timeout - (time.monotonic() - started[node]), 1))
                self._record.setdefault("bootSeconds", {})[node] = round(boot, 2)
            if sftp:  # after boot: the server may be a systemd node
                sftp_server.start(self, self.root / "sftp")
            self._record["state"] = "ready"
            self._save()
        except BaseException:
            self.down(purge=ephemeral)
            raise
        return self

    def down(self, purge: bool = True) -> None:
        """End every process of the lab, delete its namespaces and its folder. Idempotent;
        only processes whose command line is this lab's node holder, and those in this
        lab's containers' control groups, are signalled.

        `purge=False` keeps the shared folder (an operator's repository, test output);
        `reconcile lab down` does that unless given --purge. A shared folder left empty
        goes anyway."""
        systemd_node.stop_all(self)
        victims = self._holder_processes()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self._wrappers:
            p.wait(timeout=30)
        self._wrappers.clear()
        deadline = time.monotonic() + 30
        while any(_proc_start(pid) is not None for pid in victims):
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.name!r}: node processes {victims} did not end")
            time.sleep(0.02)
        for ns in self._netns_names():
            _run(["ip", "netns", "delete", ns])
        self._remove_cgroups()
        if self.root.exists():
            keep = not purge and self.shared.is_dir() and any(self.shared.iterdir())
            for entry in (self.root.iterdir() if keep else [self.root]):
                if entry != self.shared:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        self._record = None

    def _holder_processes(self) -> list[int]:
        """Host PIDs of this lab's holders and their unshare parents, found by command line
        (also when lab.json is gone), so nothing else is ever killed."""
        nodes_dir = f"{self.root}/nodes/"
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            args = _cmdline(int(entry.name))
            if any(a.endswith(HOLDER_SUFFIX) for a in args) and any(a.startswith(nodes_dir) for a in args):
                found.append(int(entry.name))
        return found

    def _netns_names(self) -> list[str]:
        mine = re.compile(rf"^{re.escape(self.name)}-(sw|lb\d+|dc\d+)$")
        try:
            return sorted(n for n in os.listdir("/run/netns") if mine.match(n))
        except FileNotFoundError:
            return []

    def _cgroups(self) -> list[Path]:
        """This lab's folder in each cgroup hierarchy (made by LXC in a node; see _prefill).
        LXC places it under the cgroup of whoever started the container, so look a few
        levels down."""
        found = []
        for top in _cgroup_mounts():
            for dirpath, dirnames, _files in os.walk(top):
                if CGROUP_DIR in dirnames and (Path(dirpath) / CGROUP_DIR / self.name).is_dir():
                    found.append(Path(dirpath) / CGROUP_DIR / self.name)
                if dirpath.count("/") - top.count("/") >= 2:
                    dirnames.clear()
        return found

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 10
        for top in self._cgroups():
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                while True:
                    try:
                        os.rmdir(dirpath)  # a cgroup folder goes once its tasks have exited
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            try:
                top.parent.rmdir()  # shared by all labs: stays while another lab uses it
            except OSError:
                pass

    def _start_nodes(self, timeout: float) -> None:
        """Start the holder (init-less) nodes and wait until each built its file system."""
        holders = [n for n in self.record["nodes"] if n.get("init", "holder") == "holder"]
        for n in holders:
            node_dir = self.root / "nodes" / n["name"]
            node_dir.mkdir(parents=True)
            self._prefill(node_dir, n["name"])
            conf = {"hostname": n["name"], "keep": sorted({str(CHECKOUT), sys.prefix, str(venv_bin())}),
                    "writable": [str(self.shared), str(node_dir)]}
            (node_dir / "node.json").write_text(json.dumps(conf))
            with open(node_dir / "holder.log", "wb") as log:
                self._wrappers.append(subprocess.Popen(
                    ["unshare", "--net", "--mount", "--uts", "--ipc", "--pid", "--fork", "--",
                     sys.executable, "-I", "-S", str(HOLDER), str(node_dir)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))  # survives the CLI process that ran `lab up`
        deadline = time.monotonic() + timeout
        for n, wrapper in zip(holders, self._wrappers):
            node_dir = self.root / "nodes" / n["name"]
            while not (node_dir / "ready").exists():
                if wrapper.poll() is not None or time.monotonic() > deadline:
                    log = (node_dir / "holder.log").read_text(errors="replace").strip()
                    raise LabError(f"lab node {n['name']} did not start: {log or 'timeout'}")
                time.sleep(0.005)
            n["pid"] = json.loads((node_dir / "ready").read_text())["pid"]
            n["start"] = _proc_start(n["pid"])
        self._save()

    def _wire(self) -> None:
        """One bridge in its own namespace, one veth per node: the host's network namespace
        gains nothing, and no node has a default route."""
        _run(["ip", "netns", "add", self.switch])
        sw = ["link add br0 type bridge mcast_snooping 0", "link set lo up", "link set br0 up"]
        for n in self.record["nodes"]:
            ns = self._netns(n["name"])
            if n.get("init", "holder") == "holder":  # a systemd node's namespace was made by name
                _run(["ip", "netns", "attach", ns, str(n["pid"])])
            sw += [f"link add {n['name']} type veth peer name eth0 netns {ns}",
                   f"link set {n['name']} master br0", f"link set {n['name']} up"]
        _run(["ip", "-n", self.switch, "-batch", "-"], input="\n".join(sw) + "\n")
        for n in self.record["nodes"]:
            # nodad: the address is usable at once (no duplicate detection on the lab's own bridge)
            v6 = f"addr add {config.address6(n['address'])}/{config.PREFIX_LEN6} dev eth0 nodad\n"
            _run(["ip", "-n", self._netns(n["name"]), "-batch", "-"],
                 input=f"link set lo up\naddr add {n['address']}/{config.PREFIX_LEN} dev eth0\n{v6}link set eth0 up\n")

    # -- the node's private files, written into its overlay's upper layer before it starts --
    def _prefill(self, node_dir: Path, node: str) -> None:
        upper = node_dir / "upper"
        for top in OVERLAID:
            _mkdir_like(upper / top.lstrip("/"), Path(top))
        files = self._node_files(node)
        # LXC makes a container's control groups relative to the caller's; this pattern puts
        # them under reconcile-lab/<lab>/<node>/ so that down() finds and removes them.
        files["/etc/lxc/lxc.conf"] = (
            "# lab node: containers' control groups are removed by `reconcile lab down`\n"
            f"lxc.cgroup.pattern = {CGROUP_DIR}/{self.name}/{node}/%n\n", 0o644)
        for path, (text, mode) in files.items():
            prefill_file(upper, path, text, mode, dir_mode=private_dir_mode(mode))

    def _node_files(self, node: str) -> dict[str, tuple[str | bytes, int]]:
        """The files that make a node itself: path → (text, mode)."""
        dc = bool(self.record["domain_controller"])
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for n in self.record["nodes"]:
            names = f"{n['name']}.{config.DOMAIN} {n['name']}" if dc else n["name"]
            hosts.append(f"{n['address']}\t{names}")
        files = {
            "/etc/hostname": (node + "\n", 0o644),
            "/etc/hosts": ("\n".join(hosts) + "\n", 0o644),
            "/etc/machine-id": (secrets.token_hex(16) + "\n", 0o444),
            "/etc/resolv.conf": ((
                f"search {config.DOMAIN}\nnameserver {config.DC_ADDRESS}\n" if dc else
                "# lab without a DNS server: lookups fail at once\nnameserver 127.0.0.1\n"
                "options timeout:1 attempts:1\n"), 0o644),
        }
        if dc:
            files["/etc/krb5.conf"] = (KRB5_CONF, 0o644)
            files[config.JOIN_PASSWORD_FILE] = (config.ADMIN_PASSWORD, 0o600)
        # One Corosync authkey per lab, the same on every node (as an operator copies it):
        # the example Cluster encrypts its traffic with it.
        files[config.COROSYNC_AUTHKEY_FILE] = (self._authkey, 0o400)
        server = self.record.get("sftp")
        if server:  # what a client of the lab's SFTP server needs (its key, the password, the host key)
            from controller.lab import sftp

            address = next(n["address"] for n in self.record["nodes"] if n["name"] == server)
            files.update(sftp.client_files(self.root / "sftp", server, address))
        return files

    # -- running things in nodes -----------------------------------------------------------
    def enter_argv(self, node: str, cwd: str = "/") -> list[str]:
        """The argv prefix that runs a command in the node: nsenter into all its namespaces
        (lxc-attach for a systemd node), working in `cwd` (a folder as the node sees it)."""
        n = self._node(node)
        if not n.alive:
            raise LabError(f"lab {self.name!r}: node {node} is not running (its init {n.pid} is gone)")
        if n.init == "systemd":
            return systemd_node.attach_argv(self, node, cwd)
        return ["nsenter", "-t", str(n.pid), "-n", "-m", "-u", "-i", "-p", f"--wd={cwd}", "--"]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of commands in nodes: the caller's, with a PATH that starts
        with this installation's venv (so `reconcile` runs) and then the system folders."""
        env = dict(os.environ)
        env["PATH"] = f"{venv_bin()}:{NODE_PATH}"
        env.update(extra or {})
        return env

    def exec(self, node: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 120.0,
             check: bool = True, cwd: str = "/", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv in the node and wait; stdout and stderr are captured as text. `env`
        adds variables to `self.env()`. check=True raises NodeCommandError on a non-zero
        exit; a timeout kills the command and raises LabError. A command that leaves a
        process holding its stdout open (a daemon that does not detach its output) makes
        this wait until timeout: start such things with `popen`."""
        proc = subprocess.Popen(self.enter_argv(node, cwd) + list(argv), env=self.env(env), text=True,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_command(proc.pid, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a detached child still holds the output open
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            raise LabError(f"{node}: {' '.join(argv)} still running after {timeout}s; "
                           f"stdout: {out[-500:]!r} stderr: {err[-500:]!r}") from None
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and proc.returncode:
            raise NodeCommandError(node, result)
        return result

    def popen(self, node: str, argv: Sequence[str], *, cwd: str = "/", env: dict[str, str] | None = None,
              **kwargs: Any) -> NodeProcess:
        """Start a long-running command in the node (a test server, a daemon in the
        foreground). Returns a Popen whose terminate()/kill() reach the command itself.
        Everything still running in a node ends with `down()`."""
        return NodeProcess(self.enter_argv(node, cwd) + list(argv), env=self.env(env),
                           start_new_session=True, **kwargs)

    def sees(self, node: str, path: str) -> bool:
        """Whether the folder exists in the node (host folders under /tmp or /run do not)."""
        return os.path.isdir(f"/proc/{self.pid(node)}/root{path}")

    def read_file(self, node: str, path: str) -> str:
        return self.exec(node, ["cat", "--", path]).stdout

    def write_file(self, node: str, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file in the node atomically (parents created), as the node sees the path."""
        self.exec(node, ["/usr/bin/python3", "-I", "-c", _WRITE_FILE, path, oct(mode)], input=text)

    def wait_tcp(self, node: str, host: str, port: int, timeout: float = 30.0) -> None:
        """Wait until a TCP connect from the node to host:port succeeds."""
        r = self.exec(node, ["/usr/bin/python3", "-I", "-c", _WAIT_TCP, host, str(port), str(timeout)],
                      check=False, timeout=timeout + 10)
        if r.returncode:
            raise LabError(f"{node}: nothing answers on {host}:{port} after {timeout}s")

    def reconcile(self, node: str, *args: str, check: bool = False, timeout: float = 300.0,
                  input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `reconcile` CLI inside the node, as an operator on that machine would."""
        return self.exec(node, ["reconcile", *args], check=check, timeout=timeout, input=input)

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        rec = self.record
        nodes = []
        for n in rec["nodes"]:
            node = Node(**n)
            nodes.append({"name": node.name, "address": node.address, "pid": node.pid, "init": node.init,
                          "alive": node.alive, "netns": self._netns(node.name)})
            if node.name in rec.get("bootSeconds", {}):
                nodes[-1]["bootSeconds"] = rec["bootSeconds"][node.name]
        out: dict[str, Any] = {"name": self.name, "root": str(self.root), "state": rec["state"],
                               "shared": str(self.shared), "nodes": nodes}
        if rec.get("domain_controller"):
            from controller.lab import dc

            out["domain_controller"] = dc.answers(self)
        if rec.get("sftp"):
            out["sftp"] = {"node": rec["sftp"], "address": self.address(rec["sftp"]), "user": config.SFTP_USER}
        return out


_counter = itertools.count(1)


@contextlib.contextmanager
def temporary_lab(nodes: int = 2, domain_controller: bool = False, *, systemd: bool = False, sftp: bool = False,
                  prefix: str = "t") -> Iterator[Lab]:
    """A lab under a name no other live process uses (`t<pid>-<n>`), torn down on exit
    even when the body fails. Marked ephemeral: if this process is killed,
    `sweep_orphans` (run by the test session) removes what it left."""
    lab = Lab(f"{prefix}{os.getpid()}-{next(_counter)}")
    try:
        yield lab.up(nodes=nodes, domain_controller=domain_controller, systemd=systemd, sftp=sftp, ephemeral=True)
    finally:
        lab.down()


def reconcile(lab: Lab, node: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the `reconcile` CLI inside a node: `reconcile(lab, "lb1", "apply", "--repo", path)`."""
    return lab.reconcile(node, *args, **kwargs)


def sweep_orphans(base: Path = config.LAB_BASE) -> list[str]:
    """Tear down ephemeral (test) labs whose owning process has ended, e.g. a killed
    pytest run. Labs of live processes and labs made by `reconcile lab up` are kept.
    systemd nodes outlive a killed run (their LXC monitors are re-parented to the host's
    init): they go with their lab, and so do containers of labs whose record is gone."""
    removed = []
    for name in systemd_node.unrecorded_labs(Path(base)):
        Lab(name, base=Path(base)).down()
        removed.append(name)
    for d in sorted(Path(base).glob("*/lab.json")):
        try:
            rec = json.loads(d.read_text())
        except (OSError, ValueError):
            continue
        owner = rec.get("owner") or {}
        if rec.get("ephemeral") and _proc_start(owner.get("pid", 0)) != owner.get("start"):
            Lab(d.parent.name, base=Path(base)).down()
            removed.append(d.parent.name)
    return removed


def _cgroup_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")]


def _mkdir_like(path: Path, like: Path, mode: int = 0o755) -> None:
    """Create a folder of an upper layer with the mode and owner of the folder it covers:
    overlayfs shows the upper folder's attributes."""
    if path.exists():
        return
    path.mkdir(parents=True)
    try:
        st = like.stat()
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.chown(path, st.st_uid, st.st_gid)
    except FileNotFoundError:
        os.chmod(path, mode)


def prefill_file(upper: Path, path: str, text: str | bytes, mode: int, dir_mode: int = 0o755) -> None:
    """Write `path` (as the node sees it) into an upper layer or seed folder; the folders
    above it take the mode and owner of the host's (overlayfs shows the upper's)."""
    parts = Path(path).parts[1:]
    for i in range(1, len(parts)):
        _mkdir_like(upper.joinpath(*parts[:i]), Path("/", *parts[:i]), dir_mode)
    target = upper.joinpath(*parts)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    os.chmod(target, mode)


def private_dir_mode(mode: int) -> int:
    """The mode of the folders made above a prefilled file: private above a private file."""
    return 0o700 if not mode & 0o077 else 0o755


KRB5_CONF = f"""\
[libdefaults]
	default_realm = {config.REALM}
	dns_lookup_realm = false
	dns_lookup_kdc = true
	rdns = false

[realms]
	{config.REALM} = {{
		default_domain = {config.DOMAIN}
	}}

[domain_realm]
	.{config.DOMAIN} = {config.REALM}
	{config.DOMAIN} = {config.REALM}
"""

_WRITE_FILE = """\
import os, sys
path, mode = sys.argv[1], int(sys.argv[2], 8)
os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
tmp = path + ".lab-tmp"
with open(tmp, "w") as f:
    f.write(sys.stdin.read())
os.chmod(tmp, mode)
os.rename(tmp, path)
"""

_WAIT_TCP = """\
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""
