"""What a Container manifest may make the node do beyond running a container: only the
node's administrator allows it, in a file on the node that git never writes.

    # /etc/reconcile/policy.yaml (root-owned; a missing file allows nothing)
    lxc:
      allow: [hooks, system-mounts, host-network, includes, host-namespaces, sysctls]
      mounts: [/etc/ssl/certs, /dev/fuse]     # these node paths (and below) may be mounted

- hooks: `lxc.hook.*` lines and an interface's `script.up`/`script.down` (programs run on
  the node, as root, by LXC);
- system-mounts: bind mounts of the node's /, /etc, /proc, /dev (and read-write /sys);
  `mounts` allows single paths instead;
- host-network: an interface of type host (the container shares the node's network);
- includes: `lxc.include` outside /usr/share/lxc/config and `lxc.mount.fstab` (files that
  bring keys no manifest shows);
- host-namespaces: `lxc.namespace.share.*` and `lxc.namespace.keep`;
- sysctls: `lxc.sysctl.*` that are not per network or IPC namespace (they set the node's).

The file is read by the one node-policy module (reconcilers/policy.py; `RECONCILE_POLICY`
names another file); this module says what LXC asks of it.
"""
from __future__ import annotations

from typing import Any

from reconcilers.policy import load_policy

TOOL = "lxc"
SYSTEM_PATHS = ("/etc", "/proc", "/dev", "/sys")
NAMESPACED_SYSCTLS = ("net.", "kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")
PACKAGE_CONFIG = "/usr/share/lxc/config/"


def allows(capability: str) -> bool:
    """Whether this node's policy allows the lxc capability (e.g. "hooks")."""
    return load_policy().allows(TOOL, capability)


def allowed_paths() -> list[str]:
    """The node paths (and below) the policy lets containers mount (`lxc: mounts: [...]`)."""
    paths = load_policy().section(TOOL).get("mounts", [])
    return [p.rstrip("/") for p in paths if isinstance(p, str) and p.startswith("/")] if isinstance(paths, list) else []


def refusal(capability: str, what: str) -> str:
    return load_policy().refusal(TOOL, capability, what)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def mount_problem(source: str, read_only: bool) -> str | None:
    """Why mounting the node's `source` into a container needs the node's policy, or None."""
    if any(_under(source, p) for p in allowed_paths()) or allows("system-mounts"):
        return None
    if source == "/":
        return refusal("system-mounts", "mounts the node's whole file system (/)")
    for system in SYSTEM_PATHS:
        if _under(source, system) and not (system == "/sys" and read_only and source != "/sys"):
            return refusal("system-mounts", f"mounts the node's {source} (below {system})") + \
                ", or lists the path under lxc: mounts: there"
    return None


def config_line_problem(key: str, value: str) -> str | None:
    """Why a further LXC key needs the node's policy, or None."""
    if not value:
        return None  # clearing a key never adds anything
    if key.startswith("lxc.hook."):
        return None if allows("hooks") else refusal("hooks", f"{key} runs {value.split()[0]} on the node as root")
    if key in ("lxc.include", "lxc.mount.fstab") and not (key == "lxc.include" and value.startswith(PACKAGE_CONFIG)):
        return None if allows("includes") else refusal("includes", f"{key} reads {value}, which no manifest shows")
    if key.startswith("lxc.namespace.share.") or key == "lxc.namespace.keep":
        return None if allows("host-namespaces") else refusal("host-namespaces", f"{key} = {value} joins namespaces "
                                                                                 "outside the container")
    if key.startswith("lxc.sysctl.") and not key[len("lxc.sysctl."):].startswith(NAMESPACED_SYSCTLS):
        return None if allows("sysctls") else refusal("sysctls", f"{key} is not per container: it sets the node's")
    if key in ("lxc.console.logfile", "lxc.log.file", "lxc.console.path") and value.startswith("/"):
        if value != "none" and any(_under(value, p) for p in ("/etc", "/proc", "/sys", "/dev", "/boot", "/usr")):
            return None if allows("system-mounts") else refusal("system-mounts", f"{key} writes the node's {value}")
    return None


def problems(spec: Any) -> list[tuple[str, str]]:
    """(field, message) for everything in a Container spec this node's policy does not allow."""
    out: list[tuple[str, str]] = []
    for i, line in enumerate(spec.config):
        key, _, value = (part.strip() for part in line.partition("="))
        why = config_line_problem(key, value)
        if why:
            out.append((f"spec.config.{i}", why))
    for i, mount in enumerate(spec.mounts or []):
        if mount.source.startswith("/"):
            why = mount_problem(mount.source, "ro" in mount.options)
            if why:
                out.append((f"spec.mounts.{i}.source", why))
    if spec.rootfs:
        why = mount_problem(spec.rootfs, False)
        if why:
            out.append(("spec.rootfs", why.replace("mounts the node's", "runs on the node's")))
    nets = spec.networks if spec.networks is not None else [spec.network] if spec.network else []
    for i, net in enumerate(nets):
        where = f"spec.networks.{i}" if spec.networks is not None else "spec.network"
        if net.type == "host" and not allows("host-network"):
            out.append((f"{where}.type", refusal("host-network", "the container would share the node's network")))
        for key, value in net.options.items():
            if key.startswith("script.") and not allows("hooks"):
                out.append((f"{where}.options.{key}", refusal("hooks", f"{key} runs {value.split()[0]} on the node")))
    return out
