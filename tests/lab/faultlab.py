"""What the fault-injection lab tests share: a small stack of every kind that lands on one
node without a cluster stack (HAProxy, keepalived, LXC, mounts), two revisions of it that
create, update and delete objects of each kind, and an independent look at the node.

The look at the node reads the daemons' own state (haproxy.cfg and HAProxy's runtime API,
keepalived.conf, lxc-ls and each container's folder, /proc/mounts), not reconcile's
observe(), so that a check does not inherit a reconciler's blind spot. Objects reconcile
could own are those named with the prefix `flt` (or the HAProxy/keepalived objects of the
files reconcile writes whole).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from controller.lab import Lab

NODE = "lb1"
STATE = "/var/lib/reconcile"

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
"""


def backend(name: str, servers: list[tuple[str, int]], balance: str = "roundrobin") -> str:
    lines = "".join(f"    - {{name: {n}, address: 198.51.100.{i}, port: 80}}\n" for n, i in servers)
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  mode: http\n  balance: {balance}\n  servers:\n{lines}")


def frontend(name: str, port: int, default: str) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  mode: http\n  bind:\n    - {{address: 127.0.0.1, port: {port}}}\n  defaultBackend: {default}\n")


def vip(name: str, address: str, router_id: int, priority: int = 150) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  manager: keepalived\n  address: {address}\n  interface: eth0\n"
            f"  keepalived: {{routerId: {router_id}, priority: {{lb1: {priority}, lb2: 100}}}}\n")


def mount(name: str, path: str, size: str) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Mount\nmetadata: {{name: {name}}}\nspec:\n  node: lb1\n"
            f"  path: {path}\n  type: tmpfs\n  tmpfs: {{size: {size}}}\n")


def container(name: str, address: str) -> str:
    """A busybox container left stopped (what is tested is its making and removal)."""
    return (f"---\napiVersion: reconcile/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  nodes: [lb1]\n"
            f"  template: busybox\n  state: stopped\n"
            f"  network: {{type: bridge, bridge: flt0, address: {address}/24, bridgeAddress: 198.51.100.1/24}}\n"
            f"  files:\n    /www/index.html: \"{name}\\n\"\n")


@dataclass(frozen=True)
class Revision:
    """A tree, and what the node runs once it is converged to it."""

    name: str
    text: str
    backends: dict[str, tuple[str, ...]]  # name → server names
    frontends: tuple[str, ...]
    vips: tuple[str, ...]
    containers: tuple[str, ...]
    mounts: tuple[str, ...]  # paths

    def objects(self) -> set[str]:
        return ({f"Backend/{b}" for b in self.backends} | {f"Frontend/{f}" for f in self.frontends}
                | {f"VirtualIP/{v}" for v in self.vips} | {f"Container/{c}" for c in self.containers}
                | {f"Mount/{m}" for m in MOUNT_NAMES if MOUNT_NAMES[m] in self.mounts})


MOUNT_NAMES = {"fltscratch": "/mnt/flt-a", "fltextra": "/mnt/flt-b"}

A = Revision(
    "a",
    CLUSTER + backend("fltapp", [("s1", 21), ("s2", 22)]) + frontend("fltweb", 8080, "fltapp")
    + vip("fltvip1", "192.0.2.101/24", 51) + mount("fltscratch", "/mnt/flt-a", "8M")
    + container("fltct1", "198.51.100.31"),
    backends={"fltapp": ("s1", "s2")}, frontends=("fltweb",), vips=("fltvip1",), containers=("fltct1",),
    mounts=("/mnt/flt-a",))
B = Revision(
    "b",
    CLUSTER + backend("fltapp", [("s2", 22), ("s3", 23)], "leastconn") + backend("fltapi", [("a1", 24)])
    + frontend("fltweb", 8080, "fltapi") + frontend("fltadmin", 8081, "fltapp")
    + vip("fltvip1", "192.0.2.101/24", 51, priority=120) + vip("fltvip2", "192.0.2.102/24", 52)
    + mount("fltextra", "/mnt/flt-b", "4M") + container("fltct1", "198.51.100.31")
    + container("fltct2", "198.51.100.32"),
    backends={"fltapp": ("s2", "s3"), "fltapi": ("a1",)}, frontends=("fltweb", "fltadmin"),
    vips=("fltvip1", "fltvip2"), containers=("fltct1", "fltct2"), mounts=("/mnt/flt-b",))


def write_tree(lab: Lab, revision: Revision) -> str:
    folder = lab.shared / f"tree-{revision.name}"
    folder.mkdir(exist_ok=True)
    (folder / "all.yaml").write_text(revision.text)
    return str(folder)


# Runs in the node: one command on HAProxy's admin socket, the answer printed ("" when
# HAProxy does not run).
HAPROXY_CLI = r"""
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect("/run/haproxy/admin.sock")
except OSError:
    sys.exit(0)
s.sendall(sys.argv[1].encode() + b"\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode())
"""

# Runs in the node: every leftover of a killed run that must not stay: temp files of the
# atomic writer and of the state folder, private temp folders of reconcile processes, and
# validator temp files from before those existed.
LEFTOVERS = r"""
import json, os, sys
found = []
for top in ("/etc", "/var/lib", "/tmp", "/run", "/mnt"):
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(folder, d)) or folder == top]
        if folder.startswith("/var/lib/lxc/") and folder.count("/") > 4:
            dirs[:] = []  # a container's rootfs is the template's business
            continue
        for name in files + dirs:
            if (name.startswith(".") and name.endswith(".tmp")) or name.startswith(("reconcile.", "reconcile-")):
                found.append(os.path.join(folder, name))
print(json.dumps(found))
"""


def sh(lab: Lab, *argv: str, check: bool = True) -> str:
    return lab.exec(NODE, list(argv), check=check).stdout


def haproxy_file(lab: Lab) -> dict[str, Any]:
    text = sh(lab, "cat", "/etc/haproxy/haproxy.cfg", check=False)
    backends: dict[str, list[str]] = {}
    frontends: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "backend":
            current = backends.setdefault(words[1], [])
        elif words[0] in ("frontend", "listen", "defaults", "global"):
            current = None
            if words[0] == "frontend":
                frontends.append(words[1])
        elif words[0] == "server" and current is not None:
            current.append(words[1])
    return {"backends": {b: sorted(s) for b, s in backends.items() if b.startswith("flt")},
            "frontends": sorted(f for f in frontends if f.startswith("flt"))}


def haproxy_runtime(lab: Lab) -> dict[str, list[str]]:
    out = sh(lab, "/usr/bin/python3", "-c", HAPROXY_CLI, "show servers state")
    servers: dict[str, list[str]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) > 4 and f[0].isdigit() and f[1].startswith("flt"):
            servers.setdefault(f[1], []).append(f[3])
    return {b: sorted(s) for b, s in servers.items()}


def containers(lab: Lab) -> dict[str, dict[str, Any]]:
    """Containers named flt*: whether their folder is whole (config, rootfs) and not half
    made (`partial`, LXC's marker of a creation in progress)."""
    out = sh(lab, "sh", "-c", "for d in /var/lib/lxc/flt*; do [ -e \"$d\" ] || continue; n=${d##*/}; "
                              "printf '%s %s %s %s\\n' \"$n\" \"$([ -f $d/config ] && echo config || echo -)\" "
                              "\"$([ -e $d/partial ] && echo partial || echo -)\" "
                              "\"$([ -d $d/rootfs/bin ] && echo rootfs || echo -)\"; done")
    listed = set(sh(lab, "lxc-ls", "-1").split())
    found = {}
    for line in out.splitlines():
        name, config, partial, rootfs = line.split()
        found[name] = {"config": config == "config", "partial": partial == "partial", "rootfs": rootfs == "rootfs",
                       "listed": name in listed}
    return found


def mounts(lab: Lab) -> list[str]:
    return sorted(line.split()[1] for line in sh(lab, "cat", "/proc/mounts").splitlines()
                  if line.split()[1].startswith("/mnt/flt"))


def vrrp_instances(lab: Lab) -> list[str]:
    text = sh(lab, "cat", "/etc/keepalived/keepalived.conf", check=False)
    return sorted(re.findall(r"^\s*vrrp_instance\s+(\S+)", text, re.M))


def inventory(lab: Lab) -> set[str]:
    text = sh(lab, "cat", f"{STATE}/inventory.json", check=False)
    return set(json.loads(text)["objects"]) if text.strip() else set()


def leftovers(lab: Lab) -> list[str]:
    return json.loads(sh(lab, "/usr/bin/python3", "-I", "-c", LEFTOVERS))


def node_matches(lab: Lab, revision: Revision, before: list[str] = ()) -> list[str]:
    """What differs between the node and `revision`, and what breaks the fault rules:
    an object outside the inventory, a temp file left (other than `before`: what the
    node's folders held before the test, such as the host's own files seen through the
    node's overlays), a half-made container. Empty when all is well."""
    problems = []
    ha = haproxy_file(lab)
    want_backends = {b: sorted(s) for b, s in revision.backends.items()}
    if ha["backends"] != want_backends:
        problems.append(f"haproxy.cfg backends {ha['backends']} != {want_backends}")
    if ha["frontends"] != sorted(revision.frontends):
        problems.append(f"haproxy.cfg frontends {ha['frontends']} != {sorted(revision.frontends)}")
    runtime = haproxy_runtime(lab)
    if runtime != want_backends:
        problems.append(f"HAProxy runs {runtime}, its file says {ha['backends']}, git {want_backends}")
    if vrrp_instances(lab) != sorted(revision.vips):
        problems.append(f"keepalived.conf instances {vrrp_instances(lab)} != {sorted(revision.vips)}")
    cts = containers(lab)
    if sorted(cts) != sorted(revision.containers):
        problems.append(f"containers {sorted(cts)} != {sorted(revision.containers)}")
    for name, c in cts.items():
        if c["partial"] or not c["config"] or not c["rootfs"] or not c["listed"]:
            problems.append(f"container {name} is half made: {c}")
    if mounts(lab) != sorted(revision.mounts):
        problems.append(f"mounts {mounts(lab)} != {sorted(revision.mounts)}")
    owned = {k for k in inventory(lab) if k.split("/", 1)[1].startswith("flt")}
    if owned != revision.objects():
        problems.append(f"inventory {sorted(owned)} != objects of the revision {sorted(revision.objects())}")
    left = [f for f in leftovers(lab) if f not in before]
    if left:
        problems.append(f"temp files left: {left}")
    return problems


def apply(lab: Lab, tree: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 180.0):
    return lab.exec(NODE, ["reconcile", "apply", "--repo", tree, "--allow-mass-prune", "--no-health", *extra],
                    check=False, env=env, timeout=timeout)


def plan(lab: Lab, tree: str):
    return lab.exec(NODE, ["reconcile", "--dry-run", "--no-health", "--repo", tree], check=False)


def clean_node(lab: Lab) -> None:
    """Remove whatever the stack made, so that the next test starts from nothing."""
    empty = lab.shared / "tree-empty"
    empty.mkdir(exist_ok=True)
    (empty / "all.yaml").write_text(CLUSTER)
    r = apply(lab, str(empty))
    assert r.returncode == 0, r.stdout + r.stderr
    sh(lab, "sh", "-c", "for d in /var/lib/lxc/flt*; do [ -e \"$d\" ] && lxc-destroy -f -n ${d##*/}; done; "
                        "ip link del flt0 2>/dev/null; true")
