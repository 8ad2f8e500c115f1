"""`reconcile import lxc`: an LXC container's config → a Container manifest that adopts it.

Every `key = value` line is kept: a key a typed field has meaning for becomes that field
(interfaces, limits, init, idmap, AppArmor, devices, capabilities, mounts, environment,
hostname, the root file system), every other key a line of `config`, in order. LXC 2's
key names, which LXC 3 and later refuse, are translated as `lxc-update-config` does
(`lxc.network.ipv4` → `lxc.net.0.ipv4.address`), each named in a note. An environment
variable that looks like a secret moves to a 0600 file named by reference. What reconcile
writes that the file did not have is named in the notes (its additions); a line LXC never
uses (a value cleared by a later empty `key =`) is named too.

The manifest adopts the container (`adopt: true`): reconcile manages it from then on and
never creates or destroys it; planned against the container it came from, nothing is to do.
"""
from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path
from typing import Any

from reconcilers.importing import ImportProblem, Imported
from schemas.container import DROPPED_KEYS, LEGACY_KEYS, MOUNT_AUTO, TYPED_KEYS

DEFAULT_LXC_PATH = "/var/lib/lxc"
SECRET_NAME = re.compile(r".*(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY).*")
_LIMITS = {"lxc.cgroup.memory.limit_in_bytes": "memory", "lxc.cgroup2.memory.max": "memory",
           "lxc.cgroup.cpuset.cpus": "cpus", "lxc.cgroup2.cpuset.cpus": "cpus",
           "lxc.cgroup.cpu.shares": "cpuWeight", "lxc.cgroup2.cpu.weight": "cpuWeight"}
_NET_TYPED = {"type", "link", "name", "hwaddr", "mtu", "flags", "ipv4.address", "ipv4.gateway", "ipv6.address",
              "ipv6.gateway"}


def read_lines(text: str, source: str) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(line number, key, value) of every setting, LXC 2 names translated; notes."""
    out: list[tuple[int, str, str]] = []
    notes: list[str] = []
    index = -1  # lxc.network.type starts the next interface (LXC 2's numbering)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ImportProblem(f"{source}:{n}: {line!r} is not `key = value`: LXC refuses this config")
        key, _, value = (part.strip() for part in line.partition("="))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        new = key
        if key == "lxc.network.type":
            index += 1
        if key == "lxc.network":
            new = "lxc.net"
        elif key.startswith("lxc.network."):
            sub = key[len("lxc.network."):]
            if re.match(r"^[0-9]+(\.|$)", sub):
                new = f"lxc.net.{sub}"
            else:
                sub = {"ipv4": "ipv4.address", "ipv6": "ipv6.address"}.get(sub, sub)
                new = f"lxc.net.{max(index, 0)}.{sub}"
        elif key in LEGACY_KEYS:
            new = LEGACY_KEYS[key]
            if key == "lxc.rootfs" and ":" not in value:
                value = f"dir:{value}"
        elif key in DROPPED_KEYS:
            notes.append(f"{source}:{n}: {key} = {value}: dropped, LXC 3 has no such key (lxc-update-config drops it)")
            continue
        if new != key:
            notes.append(f"{source}:{n}: {key} is LXC 2's name: written as {new}")
        out.append((n, new, value))
    return out, notes


def name_of(source: str) -> tuple[str, str]:
    """(container name, LXC path) of a config at LXCPATH/NAME/config; else from the file name."""
    path = Path(source)
    if path.name == "config" and path.parent.name:
        return path.parent.name, str(path.parent.parent)
    stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:63] or "imported"
    return stem, DEFAULT_LXC_PATH


def import_text(text: str, source: str, placement: dict[str, Any], secrets_dir: Path, name: str | None = None,
                state: str | None = None) -> Imported:
    found, lxc_path = name_of(source)
    name = name or found
    lines, notes = read_lines(text, source)
    spec: dict[str, Any] = {**placement, "adopt": True}
    secrets: dict[Path, str] = {}
    config: list[str] = []
    nets: dict[int, dict[str, Any]] = {}
    lists: dict[str, list[tuple[int, str]]] = {}
    single: dict[str, tuple[int, str]] = {}
    for n, key, value in lines:
        where = f"{source}:{n}"
        if value == "":  # a line that clears a key: kept in order, first in reconcile's block
            config.append(f"{key} =")
            dead_nets = [i for i in nets if key == "lxc.net" or key.startswith(f"lxc.net.{i}")]
            for i in dead_nets:
                nets.pop(i)
                notes.append(f"{where}: {key} = clears interface {i} set earlier in this file, which LXC never uses: "
                             "left out")
            if key in single:
                notes.append(f"{where}: {key} = clears {key} = {single.pop(key)[1]} set earlier: left out")
            for k in [k for k in lists if k == key or k.startswith(key + ".")]:
                dead = lists.pop(k)
                notes.append(f"{where}: {key} = clears {len(dead)} earlier value(s) of {k} in this file, which LXC "
                             "never uses: left out")
            continue
        m = re.fullmatch(r"lxc\.net\.([0-9]+)\.(.+)", key)
        if m:
            nets.setdefault(int(m.group(1)), {}).setdefault(m.group(2), []).append((n, value))
            continue
        if key in ("lxc.mount.entry", "lxc.cap.drop", "lxc.cap.keep", "lxc.environment", "lxc.idmap") or \
                re.fullmatch(r"lxc\.cgroup2?\.devices\.(allow|deny)", key):
            lists.setdefault(key, []).append((n, value))
        elif key in TYPED_KEYS or key in _LIMITS:
            if key in single:
                notes.append(f"{source}:{single[key][0]}: {key} = {single[key][1]}: LXC uses the later value "
                             f"(line {n}): left out")
            single[key] = (n, value)
        else:
            config.append(f"{key} = {value}")
    _typed_singles(spec, single, name, lxc_path, source, notes)
    _typed_lists(spec, lists, source, secrets, secrets_dir, name, notes)
    spec["networks"] = [_interface(nets.get(i, {}), source, notes) for i in range(max(nets) + 1)] if nets else None
    if spec["networks"] is None:
        del spec["networks"]
        notes.append("reconcile adds lxc.net.0.type = empty (no interface but loopback, what LXC does without one)")
    if config:
        spec["config"] = config
    if state:
        spec["state"] = state
    else:
        notes.append("state: running is assumed (import --live reads it); change it if the container should be stopped")
    if lxc_path != DEFAULT_LXC_PATH:
        spec["lxcPath"] = lxc_path
    hooks = [c for c in config if c.startswith("lxc.hook.") and not c.endswith("=")]
    if hooks:
        notes.append(f"{len(hooks)} hook(s) ({hooks[0]} …): run on the node, so its policy must allow lxc hooks")
    notes.append("reconcile adds its block (marker and source lines) and lxc.start.auto = 0 when autostart is off")
    doc = {"apiVersion": "reconcile/v1", "kind": "Container", "metadata": {"name": name}, "spec": spec}
    return Imported([doc], secrets, notes)


def _typed_singles(spec: dict[str, Any], single: dict[str, tuple[int, str]], name: str, lxc_path: str,
                   source: str, notes: list[str]) -> None:
    def value(key: str) -> str | None:
        return single[key][1] if key in single else None

    if value("lxc.rootfs.path"):
        rootfs = value("lxc.rootfs.path")
        backing, _, path = rootfs.partition(":") if ":" in rootfs else ("dir", "", rootfs)
        if backing != "dir":
            raise ImportProblem(f"{source}:{single['lxc.rootfs.path'][0]}: lxc.rootfs.path: a {backing} root file "
                                "system: reconcile manages directory (dir) root file systems only")
        if path.rstrip("/") != f"{lxc_path.rstrip('/')}/{name}/rootfs":
            spec["rootfs"] = path.rstrip("/")
    if value("lxc.uts.name"):
        spec["hostname"] = value("lxc.uts.name")
    if value("lxc.start.auto") is not None:
        spec["autostart"] = value("lxc.start.auto") == "1"
    if value("lxc.start.order") is not None:
        spec["startOrder"] = int(value("lxc.start.order"))  # type: ignore[arg-type]
    if value("lxc.init.cmd"):
        spec["init"] = value("lxc.init.cmd").split()  # type: ignore[union-attr]
    limits: dict[str, Any] = {}
    for key, field in _LIMITS.items():
        if value(key) is not None:
            raw = value(key)
            if field == "cpuWeight":
                shares = int(raw)  # type: ignore[arg-type]
                weight = shares if key.startswith("lxc.cgroup2.") else max(1, round(shares * 100 / 1024))
                if key == "lxc.cgroup.cpu.shares" and max(2, round(weight * 1024 / 100)) != shares:
                    notes.append(f"{source}:{single[key][0]}: cpu.shares {shares} is cpuWeight {weight}, written back "
                                 f"as shares {max(2, round(weight * 1024 / 100))} (cgroup v1 has no exact match)")
                limits[field] = weight
            else:
                limits[field] = raw
    if limits:
        spec["limits"] = limits
    apparmor = {f: value(k) for f, k in (("profile", "lxc.apparmor.profile"),)}
    for f, k in (("allowNesting", "lxc.apparmor.allow_nesting"), ("allowIncomplete", "lxc.apparmor.allow_incomplete")):
        if value(k) is not None:
            apparmor[f] = value(k) == "1"  # type: ignore[assignment]
    if any(v is not None for v in apparmor.values()):
        spec["apparmor"] = {k: v for k, v in apparmor.items() if v is not None}
        profile = apparmor.get("profile") or ""
        if " #" in profile:
            notes.append(f"{source}:{single['lxc.apparmor.profile'][0]}: LXC has no comments after a value: the "
                         f"profile is {profile!r} as written")
    auto = value("lxc.mount.auto")
    if auto:
        words = auto.split()
        bad = [w for w in words if not re.fullmatch(MOUNT_AUTO, w)]
        if bad:
            raise ImportProblem(f"{source}:{single['lxc.mount.auto'][0]}: lxc.mount.auto: {bad[0]!r} is not a "
                                "mount.auto word reconcile knows (proc, sys, cgroup, cgroup-full with :mixed/:rw/…)")
        spec["mountAuto"] = words


def _typed_lists(spec: dict[str, Any], lists: dict[str, list[tuple[int, str]]], source: str,
                 secrets: dict[Path, str], secrets_dir: Path, name: str, notes: list[str]) -> None:
    if "lxc.idmap" in lists:
        spec["idmap"] = []
        for n, v in lists["lxc.idmap"]:
            parts = v.split()
            if len(parts) != 4 or parts[0] not in ("u", "g") or not all(p.isdigit() for p in parts[1:]):
                raise ImportProblem(f"{source}:{n}: lxc.idmap: {v!r} is not `u|g CONTAINER HOST COUNT`")
            spec["idmap"].append({"type": parts[0], "container": int(parts[1]), "host": int(parts[2]),
                                  "count": int(parts[3])})
    devices = sorted((n, k.rsplit(".", 1)[1], v) for k, vs in lists.items()
                     if re.fullmatch(r"lxc\.cgroup2?\.devices\.(allow|deny)", k) for n, v in vs)
    if devices:
        spec["devices"] = [{kind: " ".join(v.split())} for _, kind, v in devices]
    drop = [w for _, v in lists.get("lxc.cap.drop", []) for w in v.split()]
    keep = [w for _, v in lists.get("lxc.cap.keep", []) for w in v.split()]
    if drop or keep:
        spec["capabilities"] = {k: v for k, v in (("drop", drop), ("keep", keep)) if v}
    if "lxc.mount.entry" in lists:
        spec["mounts"] = []
        for n, v in lists["lxc.mount.entry"]:
            parts = v.split()
            if len(parts) < 4:
                raise ImportProblem(f"{source}:{n}: lxc.mount.entry: {v!r} is not `SOURCE TARGET TYPE OPTIONS`")
            if parts[4:] not in ([], ["0"], ["0", "0"]):
                notes.append(f"{source}:{n}: the dump and pass fields of a mount entry are written as 0 0 "
                             "(LXC does not use them)")
            spec["mounts"].append({"source": parts[0], "target": parts[1], "type": parts[2],
                                   "options": parts[3].split(",")})
    if "lxc.environment" in lists:
        env: dict[str, Any] = {}
        for n, v in lists["lxc.environment"]:
            var, _, val = v.partition("=")
            if SECRET_NAME.fullmatch(var):
                path = secrets_dir / f"{name}-{var.lower()}"
                secrets[path] = val
                env[var] = {"file": str(path)}
                notes.append(f"{source}:{n}: {var} looks like a secret: moved to {path} (0600), named by reference")
            else:
                env[var] = val
        spec["environment"] = env


def _interface(keys: dict[str, list[tuple[int, str]]], source: str, notes: list[str]) -> dict[str, Any]:
    def last(sub: str) -> str | None:
        return keys[sub][-1][1] if sub in keys else None

    kind = last("type") or "empty"
    link = last("link")
    net: dict[str, Any] = {}
    if kind == "veth":
        if not link:
            n = keys["type"][-1][0]
            raise ImportProblem(f"{source}:{n}: a veth without lxc.net.N.link (not on a bridge): reconcile puts a "
                                "container's veth on a bridge")
        net.update(type="bridge", bridge=link)
    elif kind in ("macvlan", "vlan", "phys"):
        net.update(type=kind, link=link)
    else:
        net["type"] = {"empty": "none", "none": "host"}.get(kind, kind)
    if net["type"] in ("none", "host"):
        return net
    net["up"] = last("flags") == "up"
    for sub, field in (("name", "name"), ("hwaddr", "mac"), ("ipv4.gateway", "gateway"), ("ipv6.gateway", "ipv6Gateway")):
        if last(sub):
            net[field] = last(sub)
    if last("mtu"):
        net["mtu"] = int(last("mtu"))  # type: ignore[arg-type]
    if "ipv4.address" in keys:
        net["addresses"] = [" ".join(v.split()) for _, v in keys["ipv4.address"]]
    if "ipv6.address" in keys:
        net["ipv6"] = [v for _, v in keys["ipv6.address"]]
    options = {sub: vs[-1][1] for sub, vs in keys.items() if sub not in _NET_TYPED}
    if options:
        net["options"] = options
    return net


# --- the command line -------------------------------------------------------------------------------


def live(node: Any = None, lxc_path: str = DEFAULT_LXC_PATH, names: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(config path, its text, run state) of the containers in an LXC path on this node."""
    from reconcilers.base import Node, Runner
    from reconcilers.lxc.tools import list_states

    node = node or Node(socket.gethostname().split(".")[0], Runner(dry_run=True))
    states = list_states(node, lxc_path)[0]
    out = []
    for name in names or sorted(states):
        path = Path(lxc_path) / name / "config"
        try:
            text = path.read_text()
        except OSError as err:
            raise ImportProblem(f"{path}: cannot read: {err.strerror}") from None
        state = states.get(name, ("stopped", None))[0]
        out.append((str(path), text, state if state in ("running", "stopped", "frozen") else "stopped"))
    return out


def main(argv: list[str]) -> int:
    """`reconcile import lxc (FILE… | --live [NAME…])`: print the manifests (or write them)."""
    from controller.importcli import placement_args, resolve, write_imported

    p = argparse.ArgumentParser(prog="reconcile import lxc", description="Container manifests from LXC configs")
    p.add_argument("files", nargs="*", type=Path, help="container configs (LXCPATH/NAME/config); with --live: names")
    p.add_argument("--live", action="store_true", help="the containers of this node (their configs and states)")
    p.add_argument("--lxc-path", default=DEFAULT_LXC_PATH, help="with --live: where they are")
    placement_args(p)
    args = p.parse_args(argv)
    resolve(args, "lxc")
    try:
        if args.live:
            found = live(lxc_path=args.lxc_path, names=[str(f) for f in args.files] or None)
        else:
            found = [(str(f), f.read_text(), "") for f in args.files]
        if not found:
            p.error("give container configs, or --live")
        results = [import_text(text, source, args.placement, args.secrets_dir, state=state or None)
                   for source, text, state in found]
    except ImportProblem as err:
        print(f"reconcile import lxc: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"reconcile import lxc: {err}", file=sys.stderr)
        return 1
    return write_imported("lxc", results, args)
