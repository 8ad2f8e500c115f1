"""bench_import.py --tool sssd: unwrap → `reconcile import domain` → load → render → compare
→ `sssctl config-check` on the original and on the rendering.

A setting of the original is kept when the rendering has it in the same section with the
same value as sssd reads it: booleans in any case (True is true), list options
(`services`, `domains`, `simple_allow_groups`, `ad_server`, …) item by item, DNS names and
realms (`ad_domain`, `krb5_realm`, `domains`) in any case; a password by reference counts
when its file holds the original value. A `realm join` script's sudoers and PAM lines count
as settings of their own (a sudo rule, the pam_mkhomedir arguments).
"""
from __future__ import annotations

import os
import re
import shlex
import tempfile
from pathlib import Path

from bench.import_common import Row, checked_manifest
from reconcilers.base import ApplyError, Node, Runner
from reconcilers.domain import files, sssd
from reconcilers.domain.importer import import_files
from reconcilers.domain.sudoers import parse_rules, sudoers_unescape
from reconcilers.importing import ImportProblem

LISTS = ("services", "domains", "simple_allow_groups", "simple_allow_users", "ad_server", "ad_backup_server",
         "filter_users", "filter_groups")
CASELESS = ("ad_domain", "krb5_realm", "domains")


def unwrap(path: Path) -> dict:
    """What a published file holds: an sssd.conf (placeholders such as <DOMAIN.TLD> filled),
    or a `realm join` script's domain, user, sudoers and PAM lines."""
    text = path.read_text()
    if path.suffix != ".sh":
        filled = re.sub(r"<([A-Za-z0-9.-]+)>", lambda m: m.group(1).lower(), text)
        notes = ["placeholders <…> filled with their own names"] if filled != text else []
        return {"conf": filled, "notes": notes}
    out: dict = {"conf": None, "sudoers": "", "pam": "", "notes": ["a realm join script: its commands read"]}
    for line in text.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words[:2] == ["realm", "join"]:
            args = words[2:]
            out["domain"] = next(w for w in reversed(args) if not w.startswith("-"))
            if "-U" in args:
                out["user"] = args[args.index("-U") + 1]
            if any(a.startswith("--membership-software=samba") for a in args):
                out["notes"].append("realm join --membership-software=samba: reconcile joins with adcli")
        m = re.search(r'echo "([^"]+)" >> (/etc/\S+)', line)
        if m:
            key = "pam" if "pam.d" in m.group(2) else "sudoers"
            out[key] += m.group(1) + "\n"
    return out


def run(folder: Path) -> list[Row]:
    rows = []
    node = Node("lb1", Runner())
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".tmpl")
                       and p.name not in ("SOURCES.tsv", "README.md")):
        found = unwrap(path)
        row = Row(path.name, False, notes=list(found["notes"]))
        rows.append(row)
        secrets_dir = Path(tempfile.mkdtemp(prefix="bench-import-"))
        try:
            imported = import_files((str(path), found["conf"]) if found["conf"] else None, {"node": "lb1"},
                                    secrets_dir, [(str(path), found["sudoers"])] if found.get("sudoers") else [],
                                    None, (str(path), found["pam"]) if found.get("pam") else None,
                                    found.get("domain"), found.get("user"))
        except ImportProblem as err:
            row.notes.append(f"import: {err}")
            continue
        checked = checked_manifest(imported.documents[0], path.name, row)
        if checked is None:
            continue
        manifest, _tree = checked
        row.imported = True
        a = files.render("corp", manifest.spec, "lb1")
        secrets = {str(p): v for p, v in imported.secrets.items()}
        final = sssd.render_sssd_conf("corp", manifest.spec, a.computer, secret=lambda ref: secrets[ref.file])
        compare(row, found, a, final)
        row.native_original = native(node, found["conf"]) if found["conf"] else "(no sssd.conf)"
        row.native_rendered = native(node, final)
    return rows


def settings(text: str) -> list[tuple[str, str, str]]:
    out = []
    for section, options in sssd.as_dict(sssd.parse_ini(text)).items():
        for key, value in options.items():
            if key in LISTS:
                value = ",".join(sorted(i.lower() if key in CASELESS else i for i in sssd.split_list(value)))
            elif value.lower() in ("true", "false"):
                value = value.lower()
            elif key in CASELESS:
                value = value.lower()
            out.append((section, key, value))
    return out


def compare(row: Row, found: dict, a: files.Artifacts, final: str) -> None:
    original = settings(found["conf"]) if found["conf"] else []
    original += [("sudoers", "rule", " ".join(sudoers_unescape(r).split())) for r in parse_rules(found.get("sudoers", ""))]
    pam = [w for line in found.get("pam", "").splitlines() for w in line.split()[3:]]
    original += [("pam_mkhomedir", w.split("=")[0], str(int(w.split("=")[1], 8)) if w.startswith("umask=") else
                  w.split("=")[1]) for w in pam]
    mine = settings(final)
    mine += [("sudoers", "rule", " ".join(sudoers_unescape(r).split())) for r in parse_rules(a.sudoers or "")]
    home = a.spec.homeDirectories
    if home.create:
        mine += [("pam_mkhomedir", "skel", home.skel), ("pam_mkhomedir", "umask", str(int(home.umask, 8)))]
    left = list(mine)
    row.keys = len(original)
    for setting in original:
        if setting in left:
            left.remove(setting)
            row.kept += 1
        else:
            row.notes.append(f"not kept: [{setting[0]}] {setting[1]} = {setting[2]}")
    if left:
        row.notes.append("reconcile adds: " + "; ".join(f"[{s}] {k} = {v}" for s, k, v in left))


def native(node: Node, text: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix="bench-sssd-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        with tempfile.TemporaryDirectory() as empty:
            sssd.check_sssd_conf(node, Path(tmp), Path(empty))
        return "ok"
    except ApplyError as err:
        return str(err).split(": ", 1)[-1]
    finally:
        os.unlink(tmp)
