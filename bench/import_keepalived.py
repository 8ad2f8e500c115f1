"""bench_import.py's keepalived hook: import → validate → render → compare → `keepalived -t`.

`keepalived -t` checks that the interfaces a file names exist and that its scripts exist and
are safe, so both files of a pair are checked inside one lab node (`temporary_lab(nodes=1)`)
that gets, for each file, veth interfaces with the names the original uses and executable
stand-ins (`exit 0`) for the scripts it runs where the node can hold them (its /etc, /var,
/root, /home, /tmp, /run: /usr is the host's, read-only). The original and the rendering see
the same node, so a difference in the verdict is the rendering's.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from bench.bench_import import Row
from controller.lab import Lab, temporary_lab
from controller.loader import TreeError, load_tree
from reconcilers.keepalived.conf import parse, split_command
from reconcilers.keepalived.fidelity import compare
from reconcilers.keepalived.importer import ImportError_, import_text, write
from reconcilers.keepalived.render import render_text

NODE = "lb1"
WRITABLE = ("/etc/", "/var/", "/root/", "/home/", "/tmp/", "/run/")
PROGRAM_KEYWORDS = {"script", "misc_path", "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop",
                    "notify_up", "notify_down", "quorum_up", "quorum_down", "notify_master_rx_lower_pri"}


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".conf" and p.is_file())


def interfaces_of(text: str) -> set[str]:
    out: set[str] = set()
    for s in (st for top in parse(text) for st in top.walk()):
        if s.keyword in ("interface", "bind_if", "default_interface") and s.args:
            out.add(s.args[0])
        if "dev" in s.words[:-1]:
            out.add(s.words[s.words.index("dev") + 1])
        if s.keyword == "track_interface":
            out.update(c.keyword for c in s.body or [])
    return {i for i in out if i and len(i) <= 15 and i != "lo"}


def programs_of(text: str) -> set[str]:
    out = set()
    for s in (st for top in parse(text) for st in top.walk()):
        if s.keyword in PROGRAM_KEYWORDS and s.args:
            argv = split_command(s.args[0])
            if argv and argv[0].startswith("/"):
                out.add(argv[0])
    return out


def writable(lab: Lab, folder: Path) -> bool:
    """Make `folder` exist and be writable in the node: below /usr (the host's, read-only)
    the nearest existing folder gets an overlay in the node's own mount namespace."""
    if str(folder).startswith(WRITABLE):
        lab.exec(NODE, ["mkdir", "-p", str(folder)])
        return True
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == Path("/") or not str(existing).startswith("/usr"):
        return False
    if lab.exec(NODE, ["touch", str(existing / ".bench-w")], check=False).returncode != 0:
        tag = str(existing).strip("/").replace("/", "_")
        upper, work = f"/tmp/ov-{tag}/u", f"/tmp/ov-{tag}/w"
        lab.exec(NODE, ["mkdir", "-p", upper, work])
        lab.exec(NODE, ["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={existing},upperdir={upper},workdir={work}", str(existing)])
    lab.exec(NODE, ["rm", "-f", str(existing / ".bench-w")], check=False)
    lab.exec(NODE, ["mkdir", "-p", str(folder)])
    return True


def prepare(lab: Lab, text: str) -> None:
    """Interfaces and stand-in scripts the original names, in the lab node."""
    have = set(lab.exec(NODE, ["ls", "/sys/class/net"]).stdout.split())
    for i, name in enumerate(sorted(interfaces_of(text) - have)):
        lab.exec(NODE, ["ip", "link", "add", name, "type", "veth", "peer", "name", f"kbp{i}"])
    for program in sorted(programs_of(text)):
        if not Path(program).exists() and writable(lab, Path(program).parent):
            lab.write_file(NODE, program, "#!/bin/sh\nexit 0\n", mode=0o755)


def cleanup(lab: Lab) -> None:
    for name in lab.exec(NODE, ["ls", "/sys/class/net"]).stdout.split():
        if name.startswith("kbp"):
            lab.exec(NODE, ["ip", "link", "del", name], check=False)


def native(lab: Lab, path: Path) -> tuple[str, set[str]]:
    """keepalived -t's verdict ("ok" or "rc N: first complaint") and its complaints without
    file names and line numbers."""
    r = lab.exec(NODE, ["keepalived", "-t", "-f", str(path)], check=False, timeout=60)
    lines = [re.sub(r"\((?:[^()]*: )?Line \d+\) ?", "", line.strip()) for line in (r.stdout + r.stderr).splitlines()
             if line.strip()]
    if r.returncode == 0:
        return "ok", set(lines)
    return f"rc {r.returncode}: " + (lines[0] if lines else "(no message)"), set(lines)


def measure(lab: Lab, original: Path) -> Row:
    text = original.read_text()
    row = Row(original.name, imported=False)
    try:
        imported = import_text(text, NODE)
    except ImportError_ as err:
        row.notes.append(f"import: {err}")
        return row
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=lab.shared))
    write(imported, work / "repo")
    try:
        tree = load_tree(work / "repo")
    except TreeError as err:
        row.notes += [f"validate: {p}" for p in err.problems[:3]]
        return row
    row.imported = True

    def secret(ref) -> str:
        return (work / "repo" / ".secrets" / Path(ref.file).name).read_text().rstrip("\n")

    rendered, _ = render_text(tree, NODE, Path("/var/lib/reconcile"), secret)
    fidelity = compare(text, rendered.text)
    row.directives, row.keywords, row.values = fidelity.total, fidelity.keyword_share, fidelity.value_share
    row.notes += [f"not kept: {m}" for m in fidelity.missing]
    (work / "original.conf").write_text(text)
    (work / "rendered.conf").write_text(rendered.text)
    prepare(lab, text)
    try:
        row.native_original, before = native(lab, work / "original.conf")
        row.native_rendered, after = native(lab, work / "rendered.conf")
        row.notes += [f"keepalived -t, original only: {m}" for m in sorted(before - after)]
        row.notes += [f"keepalived -t, rendering only: {m}" for m in sorted(after - before)]
        row.new_complaints = len(after - before)
    finally:
        cleanup(lab)
    return row


def run(folder: Path) -> list[Row]:
    with temporary_lab(nodes=1, prefix="bi") as lab:
        return [measure(lab, path) for path in files(folder)]
