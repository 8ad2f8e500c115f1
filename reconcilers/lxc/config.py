"""LXC's configuration language: `key = value` lines, read as LXC reads them and written
through one quoting function (`lxc_value`), and reconcile's marked block in a config.

LXC reads a config top to bottom: a single-valued key takes its last value, a list key
(lxc.mount.entry, lxc.cap.drop, …) collects its values, and an empty value clears what
came before. A pair of quotes around a value is removed. There are no inline comments.

Reconcile's part of a container's config is one block, last in the file (so its keys
win), between `# reconcile-managed: Container/NAME` and `# reconcile-managed: end`; the
keys it owns are removed everywhere else in the file when it writes the block.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reconcilers.base import GENERATED_HEADER, UnsafeValue, one_line

MARKER = "# reconcile-managed: Container/"
END_MARKER = "# reconcile-managed: end"
SOURCE_TAG = "# reconcile-source: "
STOP_TAG = "# reconcile-stop-timeout: "
CLUSTER_TAG = "# reconcile-cluster: "  # placed by the Pacemaker of this cluster
RUNNING_INSTANCE_TAG = "# reconcile-running-instance: "  # PID:start time the running lines hold for
ADOPTED = "adopted"  # the source tag of a container reconcile did not create
RUNNING_TAG = "# reconcile-running: "  # a restart key as the running instance has it

LIVE_KEYS = ("lxc.start.auto", "lxc.start.order")  # read by lxc-autostart: no restart needed
LIMIT_KEYS = {  # (cgroup v1 key, cgroup v2 key)
    "memory": ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max"),
    "cpus": ("lxc.cgroup.cpuset.cpus", "lxc.cgroup2.cpuset.cpus"),
    "cpuWeight": ("lxc.cgroup.cpu.shares", "lxc.cgroup2.cpu.weight"),
}
# Keys LXC collects into a list (every other key takes its last value).
LIST_KEYS = ("lxc.include", "lxc.mount.entry", "lxc.cap.drop", "lxc.cap.keep", "lxc.environment", "lxc.idmap",
             "lxc.cgroup.devices.allow", "lxc.cgroup.devices.deny", "lxc.cgroup2.devices.allow",
             "lxc.cgroup2.devices.deny", "lxc.apparmor.raw", "lxc.group", "lxc.keyring.session")


def is_list_key(key: str) -> bool:
    return key in LIST_KEYS or key.startswith("lxc.hook.") or bool(
        re.fullmatch(r"lxc\.net\.[0-9]+\.ipv[46]\.address", key))


def always_owned(key: str) -> bool:
    """Keys reconcile always writes in its block (and removes anywhere else): autostart,
    limits, the network, init."""
    return (key in LIVE_KEYS or key == "lxc.init.cmd" or key == "lxc.net" or key.startswith("lxc.net.")
            or any(key in pair for pair in LIMIT_KEYS.values()))


def lxc_value(value: Any) -> str:
    """The value of a `key = value` line of an LXC config, as it is; refused (UnsafeValue)
    when LXC would read it otherwise: a control character or line separator (a newline
    would start another key), an empty value (it clears the key), blanks at either end
    (LXC drops them) or a leading quote (LXC removes a pair of quotes around a value)."""
    text = one_line(str(value), "an LXC config line", max_length=4096)
    if not text or text != text.strip(" \t") or text[0] in "'\"":
        raise UnsafeValue(f"LXC config: refused to write {text!r}: a value there may not be empty, start or end "
                          "with a blank, or start with a quote")
    return text


def lxc_init_cmd(args: list[str]) -> str:
    """lxc.init.cmd for an argv: LXC splits the value at blanks (a word may be quoted, but
    nothing inside a quote can be escaped), so each argument must be one word without
    blanks that does not start with a quote."""
    for arg in args:
        if not arg or any(c.isspace() for c in arg) or arg[0] in "'\"":
            raise UnsafeValue(f"LXC config: refused init argument {arg!r}: LXC would not read it back as one "
                              "argument (blanks, a leading quote, or empty)")
    return lxc_value(" ".join(args))


def lxc_comment(text: str) -> str:
    """Text after a '#' of an LXC config: anything on one line."""
    return one_line(text, "an LXC config comment", max_length=4096)


def lxc_line(key: str, value: str) -> str:
    """One `key = value` line; an empty value is the line that clears the key (`key =`)."""
    if not re.fullmatch(r"lxc\.[A-Za-z0-9_.-]+", key):
        raise UnsafeValue(f"LXC config: refused key {key!r}")
    return f"{key} =" if value == "" else f"{key} = {lxc_value(value)}"



def config_lines(text: str) -> list[tuple[str, str]]:
    """The `key = value` lines of a config, in order, as LXC reads each: blanks around key
    and value dropped, a pair of quotes around the value removed (templates write
    `lxc.uts.name = "c1"`); an empty value is kept (it clears the key)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((key, value))
    return out


def parse_config(text: str) -> dict[str, list[str]]:
    """An LXC config file → {key: [values in order]}, as LXC reads it: an empty value
    clears a key (and the keys below it: `lxc.net =` clears every interface)."""
    return collect(config_lines(text))


def collect(lines: list[tuple[str, str]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in lines:
        if value == "":
            for k in [k for k in values if k == key or k.startswith(key + ".")]:
                values[k] = []
            values[key] = []
        else:
            values.setdefault(key, []).append(value)
    return values


def split_block(text: str) -> tuple[list[str], list[str] | None]:
    """(lines outside our block, lines inside it or None when the config has none)."""
    outside: list[str] = []
    inside: list[str] | None = None
    within = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(MARKER):
            within, inside = True, inside or []
            continue
        if within:
            if stripped == END_MARKER:
                within = False
            else:
                inside.append(line)  # type: ignore[union-attr]
            continue
        outside.append(line)
    return outside, inside


def scope_lines(text: str) -> list[tuple[str, str]]:
    """The lines reconcile answers for: its block's, or, in a config without our block (a
    container made by hand and adopted), the whole file's."""
    outside, inside = split_block(text)
    return config_lines("\n".join(inside if inside is not None else outside))


def last_value(values: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        if values.get(key):
            return values[key][-1]
    return None


_SIZE = re.compile(r"^([0-9]+)\s*([KMGT]?)i?B?$", re.I)
_UNITS = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]


def canonical_memory(value: str | None) -> str | None:
    """64M, 65536K and 67108864 are one limit: write it in the largest exact unit."""
    if value is None:
        return None
    m = _SIZE.match(value.strip())
    if not m:
        return value  # unknown form (e.g. "max"): shown as it is
    n = int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    for unit, size in _UNITS:
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def canonical_cpus(value: str | None) -> str | None:
    """0,1,2 and 0-2 are one CPU set: write it as sorted ranges."""
    if value is None:
        return None
    try:
        cpus: set[int] = set()
        for part in value.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return value
    ranges, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
        else:
            if run:
                ranges.append(run)
            run = [cpu]
    if run:
        ranges.append(run)
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in ranges)


def shares_of_weight(weight: int) -> int:
    """cgroup v1 cpu.shares for a v2 cpu.weight (as systemd maps them: 100 ↔ 1024)."""
    return max(2, round(weight * 1024 / 100))


def weight_of_shares(shares: int) -> int:
    return max(1, round(shares * 100 / 1024))



def marker_name(text: str) -> str | None:
    """The container name in our ownership marker, if the config has one."""
    for line in text.splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER):].strip()
    return None


def tag_value(text: str, tag: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(tag):
            return line[len(tag):].strip()
    return None


# --- host facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupLayout:
    """Which resource controllers sit on cgroup v2 (`lxc.cgroup2.*` keys) and which on a v1
    hierarchy (`lxc.cgroup.*`): a Debian 12 host boots pure v2, hybrid hosts (like this
    project's build machines) keep memory, cpuset and cpu on v1."""

    v1: frozenset[str] = frozenset()

    def v2(self, controller: str) -> bool:
        return controller not in self.v1

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo") -> "CgroupLayout":
        try:
            text = Path(mountinfo).read_text()
        except OSError:
            return cls()
        return cls.parse(text)

    @classmethod
    def parse(cls, mountinfo_text: str) -> "CgroupLayout":
        v1: set[str] = set()
        for line in mountinfo_text.splitlines():
            _, _, after = line.partition(" - ")
            parts = after.split()
            if len(parts) >= 3 and parts[0] == "cgroup":
                v1.update(o for o in parts[2].split(",") if o in ("memory", "cpuset", "cpu"))
        return cls(frozenset(v1))


# --- reconcile's block ------------------------------------------------------------------------


def render_block(name: str, source: str | None, stop_seconds: int, settings: list[tuple[str, str]],
                 cluster: str | None = None, running: tuple[str, list[tuple[str, str]]] | None = None) -> str:
    """Our block of a container's config. `cluster`: Pacemaker of that cluster places it.
    `running`: (instance, restart keys) the instance Pacemaker runs here has, while the
    settings above already say what its next start takes."""
    c = lxc_comment
    # an adopted container was not created by reconcile: it has no source, which the tag says
    lines = [f"{MARKER}{c(name)}", f"# {GENERATED_HEADER}", f"{SOURCE_TAG}{c(source or ADOPTED)}",
             f"{STOP_TAG}{c(str(stop_seconds))}"]
    if cluster:
        lines.append(f"{CLUSTER_TAG}{c(cluster)}")
    lines += [lxc_line(k, v) for k, v in settings]
    if running:
        lines.append(f"{RUNNING_INSTANCE_TAG}{c(running[0])}")
        lines += [f"{RUNNING_TAG}{c(lxc_line(k, v))}" for k, v in running[1]]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def merge_config(existing: str, block: str, owned: Callable[[str, str], bool] = lambda k, v: always_owned(k)) -> str:
    """The config with our block (last, so its keys win) and, outside it, no line that
    `owned(key, value)` claims (by default the keys reconcile always writes) and no line
    the block has too (a list key would otherwise hold the value twice)."""
    outside, _ = split_block(existing)
    ours = set(scope_lines(block))
    kept: list[str] = []
    for line in outside:
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            key, value = config_lines(stripped)[0]
            if owned(key, value) or (key, value) in ours:
                continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return ("\n".join(kept) + "\n\n" if kept else "") + block


def release_block(text: str) -> str:
    """The config with our block's settings kept as plain lines and our marker, tags and
    comments gone: an adopted container reconcile lets go of stays as it runs."""
    outside, inside = split_block(text)
    kept = [line for line in inside or [] if line.strip() and not line.strip().startswith("#")]
    while outside and not outside[-1].strip():
        outside.pop()
    return "\n".join(outside + ([""] if outside and kept else []) + kept) + "\n"


def restart_settings_of(existing: str, restart: Callable[[str], bool] | None = None) -> list[tuple[str, str]]:
    """The lines of the restart-relevant keys in our block as they are now (kept while the
    container runs under restartPolicy: never), in order and with the lines that clear a
    key, as LXC reads them (quotes around a value removed), so that each can be written
    again."""
    restart = restart or (lambda key: key not in LIVE_KEYS)  # all of our block but autostart
    return [(key, value) for key, value in scope_lines(existing) if restart(key)]


def config_path(lxc_path: str, name: str) -> str:
    """Where a container's config lives: what lxc-create makes and the lxc primitive's
    `config` parameter names."""
    return f"{lxc_path.rstrip('/') or ''}/{name}/config"


