#!/usr/bin/env python3
"""Benchmark: import → render fidelity over a folder of real configuration files.

For each file of a tool's corpus (default: ../shared/corpus/TOOL beside the checkout):
`reconcile import TOOL FILE` (the importer, in-process), `reconcile render` of the
manifests (in-process, into a temp folder), then per file:

  imported   yes, or the importer's message (which names the line)
  fidelity   share of the original's directive lines found in the rendered file, in order,
             section by section (comments and whitespace aside; reconcile's own added
             lines do not count against it)
             (keepalived: every statement with the blocks around it, keyword and values,
             as reconcilers/keepalived/fidelity.py measures it: one instance per address
             family and keepalived's own synonyms aside)
  native     the tool's own validator on the original and on the rendered file (for
             HAProxy `haproxy -c` in a lab node, with the same stand-ins for both: files
             where the original names certificates, CA files, DH parameters, error pages,
             Lua scripts; addresses in the node's /etc/hosts for the host names servers are
             given by; the empty server-state file reconcile makes before it checks. For
             keepalived `keepalived -t` in a lab node that gets, for each file, the
             interfaces the original names and `exit 0` stand-ins for the programs it runs)

Prints a table and totals; asserts nothing. A tool plugs in with a `Hook` (see HAProxy's
and keepalived's): how to split its files into sections of directive lines (or its own
fidelity measure), where render puts the file, and how to run its native check.

    .venv/bin/python bench/bench_import.py [--tool haproxy|keepalived] [FOLDER ...]

Tools whose files are not one main file of directive lines (an LXC config that may be
wrapped in a script, an sssd.conf with its sudoers and PAM lines) bring their own run and
table (`OWN_TABLE`: bench/import_lxc.py, bench/import_domain.py): settings kept as the tool
reads them, and the tool's own parser on both sides.

    .venv/bin/python bench/bench_import.py --tool lxc       (../shared/corpus/lxc)
    .venv/bin/python bench/bench_import.py --tool sssd      (../shared/corpus/sssd)
    .venv/bin/python bench/bench_import.py --tool pacemaker [--only NAME]  (crm/pcs/XML samples made CIBs)
    .venv/bin/python bench/bench_import.py --tool corosync  (../shared/corpus/corosync)
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.convert import main_render  # noqa: E402
from reconcilers.importing import ImportProblem  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
Sections = list[tuple[str, list[str]]]  # (section label, directive lines) in file order


class Hook:
    """What the driver needs to know about one tool."""

    tool = ""
    pattern = "*"
    rendered = ""  # where `reconcile render` writes the tool's main file, relative to its output folder

    def sections(self, text: str) -> Sections:
        raise NotImplementedError

    def fidelity(self, original: str, rendered: str) -> tuple[int, int]:
        """(directive lines of the original found in the rendering, lines of the original)."""
        return fidelity(self.sections(original), self.sections(rendered))

    def session(self) -> contextlib.AbstractContextManager:
        """Whatever the native checks need for the whole run (a lab, stand-in files)."""
        return contextlib.nullcontext()

    def check(self, context: object, text: str, name: str) -> bool | None:
        """The native validator's verdict on `text`; None when it cannot run here."""
        return None

    def summary(self) -> str:
        """A last line of the tool's own figures (empty: none)."""
        return ""


class HAProxyHook(Hook):
    tool = "haproxy"
    pattern = "*.cfg"
    rendered = "etc/haproxy/haproxy.cfg"

    def sections(self, text: str) -> Sections:
        from reconcilers.haproxy.config import header_of
        from schemas.haproxy_lang import strip_comment

        out: Sections = []
        for raw in text.splitlines():
            found = header_of(raw)
            if found is not None:
                label = " ".join(found).strip()
                out.append((label, []))
            elif out and strip_comment(raw):
                out[-1][1].append(" ".join(strip_comment(raw).split()))
        return out

    @contextlib.contextmanager
    def session(self) -> Iterator[object]:
        from controller.lab import temporary_lab

        with temporary_lab(nodes=1, prefix="bi") as lab:
            folder = lab.shared / "standins"
            folder.mkdir()
            pem = folder / "stand-in.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=stand-in",
                            "-days", "3650", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                           check=True, capture_output=True)
            subprocess.run(["openssl", "dhparam", "-dsaparam", "-out", str(folder / "dh.pem"), "1024"], check=True,
                           capture_output=True)
            # what reconcile makes before it checks or starts HAProxy on a node
            from reconcilers.haproxy.process import EMPTY_STATE
            lab.write_file("lb1", "/var/lib/haproxy/server-state", EMPTY_STATE)
            pem.write_text((folder / "cert.pem").read_text() + (folder / "key.pem").read_text())
            yield lab

    WRITABLE = ("/etc/", "/var/", "/tmp/", "/run/", "/home/", "/root/")
    PATH_WORDS = ("crt", "ca-file", "crl-file", "crt-list", "ssl-dh-param-file", "errorfile", "lua-load",
                  "crt-base", "ca-base")

    def _movable(self, lab, text: str) -> str:
        """`text` with absolute paths a lab node cannot write (its file system is the host's,
        read-only, outside /etc, /var, …) moved under the shared folder, the same way for
        the original and the rendered file."""
        from schemas.haproxy_lang import strip_comment, words

        paths = set()
        for raw in text.splitlines():
            w = words(strip_comment(raw))
            paths |= {w[i + 1] for i, word in enumerate(w[:-1]) if word in self.PATH_WORDS
                      and w[i + 1].startswith("/") and not w[i + 1].startswith(self.WRITABLE)}
        for path in sorted(paths, key=len, reverse=True):
            text = text.replace(path, f"{lab.shared}/root{path}")
        return text

    def _stand_ins(self, lab, text: str) -> None:
        """Stand-in files at every path the configuration names, inside the node."""
        from schemas.haproxy_lang import strip_comment, words

        bases = {"crt": "", "ca-file": ""}
        for raw in text.splitlines():
            w = words(strip_comment(raw))
            if w[:1] in (["crt-base"], ["ca-base"]) and len(w) > 1:
                bases["crt" if w[0] == "crt-base" else "ca-file"] = w[1]
        pem = (lab.shared / "standins" / "stand-in.pem").read_text()
        dh = (lab.shared / "standins" / "dh.pem").read_text()
        hosts = set()
        for raw in text.splitlines():
            w = words(strip_comment(raw))
            if w[:1] in (["server"], ["nameserver"]) and len(w) > 2:
                host = w[2].rsplit(":", 1)[0] if w[2].count(":") == 1 else w[2]
                if host and not host[0].isdigit() and "@" not in host and "$" not in host and host != "localhost":
                    hosts.add(host)
        if hosts:  # stand-in addresses for the host names servers are given by
            lab.write_file("lb1", "/etc/hosts", "127.0.0.1 localhost\n" + "".join(f"192.0.2.99 {h}\n" for h in sorted(hosts)))
        for raw in text.splitlines():
            w = words(strip_comment(raw))
            for i, word in enumerate(w[:-1]):
                path = w[i + 1]
                if "$" in path or path.startswith("@") or word not in self.PATH_WORDS[:-2]:
                    continue
                if word in ("crt", "ca-file") and not path.startswith("/") and bases[word]:
                    path = f"{bases[word]}/{path}"
                if not path.startswith("/"):
                    path = f"{lab.shared}/{path}"  # beside the configuration (`default-path config`)
                if word == "crt" and not Path(path).suffix:  # a folder of certificates
                    lab.exec("lb1", ["mkdir", "-p", path])
                    lab.write_file("lb1", f"{path}/stand-in.pem", pem)
                elif word == "crt-list":
                    lab.write_file("lb1", path, f"{lab.shared}/standins/stand-in.pem\n")
                elif word == "errorfile":
                    lab.write_file("lb1", path, "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                elif word == "lua-load":
                    lab.write_file("lb1", path, "-- stand-in\n")
                elif word == "ssl-dh-param-file":
                    lab.write_file("lb1", path, dh)
                else:
                    lab.write_file("lb1", path, pem)

    def check(self, context: object, text: str, name: str) -> bool | None:
        lab = context
        text = self._movable(lab, text)
        self._stand_ins(lab, text)
        path = lab.shared / name
        path.write_text(text if text.endswith("\n") else text + "\n")  # a file's last line, not its content
        result = lab.exec("lb1", ["haproxy", "-c", "-q", "-f", str(path)], check=False, timeout=60)
        return result.returncode == 0


class KeepalivedHook(Hook):
    """`keepalived -t` checks that the interfaces a file names exist and that its scripts
    exist and are safe, so both files of a pair are checked inside one lab node that gets,
    for each file, veth interfaces with the names the original uses and executable `exit 0`
    stand-ins for the programs it runs, where the node can hold them (its /etc, /var, /root,
    /home, /tmp, /run; below /usr an overlay in the node's own mount namespace). The original
    and the rendering see the same node, so a difference in the verdict is the rendering's."""

    tool = "keepalived"
    pattern = "*.conf"
    rendered = "etc/keepalived/keepalived.conf"
    NODE = "lb1"

    def __init__(self) -> None:
        self.complaints: dict[str, set[str]] = {}  # check name → keepalived -t's lines, without file and line
    WRITABLE = ("/etc/", "/var/", "/root/", "/home/", "/tmp/", "/run/")
    PROGRAM_KEYWORDS = {"script", "misc_path", "notify", "notify_master", "notify_backup", "notify_fault",
                        "notify_stop", "notify_up", "notify_down", "quorum_up", "quorum_down",
                        "notify_master_rx_lower_pri"}

    def fidelity(self, original: str, rendered: str) -> tuple[int, int]:
        from reconcilers.keepalived.fidelity import compare

        kept = compare(original, rendered)
        return kept.values_kept, kept.total

    @contextlib.contextmanager
    def session(self) -> Iterator[object]:
        from controller.lab import temporary_lab

        with temporary_lab(nodes=1, prefix="bi") as lab:
            yield lab

    def _statements(self, text: str) -> list:
        from reconcilers.keepalived.conf import parse

        return [st for top in parse(text) for st in top.walk()]

    def _interfaces(self, text: str) -> set[str]:
        out: set[str] = set()
        for s in self._statements(text):
            if s.keyword in ("interface", "bind_if", "default_interface") and s.args:
                out.add(s.args[0])
            if "dev" in s.words[:-1]:
                out.add(s.words[s.words.index("dev") + 1])
            if s.keyword == "track_interface":
                out.update(c.keyword for c in s.body or [])
        return {i for i in out if i and len(i) <= 15 and i != "lo"}

    def _programs(self, text: str) -> set[str]:
        from reconcilers.keepalived.conf import split_command

        out = set()
        for s in self._statements(text):
            if s.keyword in self.PROGRAM_KEYWORDS and s.args:
                argv = split_command(s.args[0])
                if argv and argv[0].startswith("/"):
                    out.add(argv[0])
        return out

    def _writable(self, lab, folder: Path) -> bool:
        """Make `folder` exist and be writable in the node: below /usr (the host's, read-only)
        the nearest existing folder gets an overlay in the node's own mount namespace."""
        if str(folder).startswith(self.WRITABLE):
            lab.exec(self.NODE, ["mkdir", "-p", str(folder)])
            return True
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing == Path("/") or not str(existing).startswith("/usr"):
            return False
        if lab.exec(self.NODE, ["touch", str(existing / ".bench-w")], check=False).returncode != 0:
            tag = str(existing).strip("/").replace("/", "_")
            upper, work = f"/tmp/ov-{tag}/u", f"/tmp/ov-{tag}/w"
            lab.exec(self.NODE, ["mkdir", "-p", upper, work])
            lab.exec(self.NODE, ["mount", "-t", "overlay", "overlay", "-o",
                                 f"lowerdir={existing},upperdir={upper},workdir={work}", str(existing)])
        lab.exec(self.NODE, ["rm", "-f", str(existing / ".bench-w")], check=False)
        lab.exec(self.NODE, ["mkdir", "-p", str(folder)])
        return True

    def check(self, context: object, text: str, name: str) -> bool | None:
        lab = context
        have = set(lab.exec(self.NODE, ["ls", "/sys/class/net"]).stdout.split())
        added = []
        for name_, interface in enumerate(sorted(self._interfaces(text) - have)):
            lab.exec(self.NODE, ["ip", "link", "add", interface, "type", "veth", "peer", "name", f"kbp{name_}"])
            added.append(interface)
        for program in sorted(self._programs(text)):
            if not Path(program).exists() and self._writable(lab, Path(program).parent):
                lab.write_file(self.NODE, program, "#!/bin/sh\nexit 0\n", mode=0o755)
        path = lab.shared / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        try:
            result = lab.exec(self.NODE, ["keepalived", "-t", "-f", str(path)], check=False, timeout=60)
        finally:
            for interface in added:
                lab.exec(self.NODE, ["ip", "link", "del", interface], check=False)
        self.complaints[name] = {re.sub(r"\((?:[^()]*: )?Line \d+\) ?", "", line.strip())
                                 for line in (result.stdout + result.stderr).splitlines() if line.strip()}
        return result.returncode == 0

    def summary(self) -> str:
        """Renderings keepalived -t says something about that it does not say about the
        original (a refused original must be refused for its own reasons only)."""
        new = {name.split("-")[0]: sorted(lines - self.complaints.get(name.replace("rendered", "original"), set()))
               for name, lines in self.complaints.items() if "-rendered" in name}
        worse = {n: lines for n, lines in new.items() if lines}
        detail = "".join(f"\n  {n}: {' | '.join(lines)}" for n, lines in sorted(worse.items()))
        return f"renderings with a keepalived -t complaint their original has not: {len(worse)}/{len(new)}{detail}"


TOOLS: dict[str, Hook] = {"haproxy": HAProxyHook(), "keepalived": KeepalivedHook()}


def lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence: lines found in order."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def fidelity(original: Sections, rendered: Sections) -> tuple[int, int]:
    """(lines found in order, lines of the original), section by section; a section of the
    original is looked for under its name (an unnamed defaults: any defaults left)."""
    pool: dict[str, list[list[str]]] = {}
    for label, lines in rendered:
        pool.setdefault(label, []).append(lines)
    found = total = 0
    for label, lines in original:
        total += len(lines)
        candidates = pool.get(label) or ([v for k, vs in pool.items() if k.startswith(label) for v in vs]
                                         if label == "defaults" else [])
        if label == "global":
            candidates = [[line for lines_ in pool.get("global", []) for line in lines_]]
        best = max((lcs(lines, c) for c in candidates), default=0)
        found += best
    return found, total


def run(hook: Hook, folders: list[Path]) -> None:
    files = sorted(f for folder in folders for f in folder.glob(hook.pattern) if f.is_file())
    rows = []
    with hook.session() as context, tempfile.TemporaryDirectory() as tmp:
        tool = importlib.import_module(f"reconcilers.{hook.tool}.importer")
        for n, path in enumerate(files):
            work = Path(tmp) / str(n)
            text = path.read_text(errors="replace")
            row = {"file": path.name, "imported": "yes", "fidelity": "", "original": "", "rendered": ""}
            try:
                imported = tool.import_text(text, path.name, {"node": "lb1"}, work / "secrets")
            except ImportProblem as err:
                row["imported"] = f"no: {err}"
                rows.append(row)
                continue
            import yaml

            (work / "repo").mkdir(parents=True)
            for secret, value in imported.secrets.items():
                secret.parent.mkdir(parents=True, exist_ok=True)
                secret.write_text(value + "\n")
            (work / "repo" / "import.yaml").write_text(yaml.safe_dump_all(imported.documents, sort_keys=False))
            said = io.StringIO()  # render's notes ("rendering for lb1 on this machine"): shown if it fails
            with contextlib.redirect_stdout(None), contextlib.redirect_stderr(said):
                code = main_render(["--repo", str(work / "repo"), "--node", "lb1", "--output-dir", str(work / "out")])
            out = work / "out" / hook.rendered
            if code != 0 or not out.exists():
                sys.stderr.write(said.getvalue())
                row["imported"] = "yes, render failed"
                rows.append(row)
                continue
            rendered = out.read_text()
            found, total = hook.fidelity(text, rendered)
            row["fidelity"] = f"{found}/{total} {100 * found / max(total, 1):.0f}%"
            row["found"], row["total"] = found, total
            original_ok = hook.check(context, text, f"{n}-original.cfg")
            rendered_ok = hook.check(context, rendered, f"{n}-rendered.cfg")
            row["original"] = {True: "accepted", False: "refused", None: "-"}[original_ok]
            row["rendered"] = {True: "accepted", False: "refused", None: "-"}[rendered_ok]
            rows.append(row)
    width = max(len(r["file"]) for r in rows)
    print(f"{'file':<{width}}  {'imported':<9} {'fidelity':<13} {'original':<9} rendered")
    for r in rows:
        imported = r["imported"] if r["imported"] == "yes" else r["imported"][:80]
        print(f"{r['file']:<{width}}  {imported:<9} {r['fidelity']:<13} {r['original']:<9} {r['rendered']}")
    ok = [r for r in rows if r["imported"] == "yes"]
    found = sum(r.get("found", 0) for r in ok)
    total = sum(r.get("total", 0) for r in ok)
    accepted = [r for r in ok if r["original"] == "accepted"]
    print(f"\n{len(ok)}/{len(rows)} imported ({100 * len(ok) / max(len(rows), 1):.0f} %); directive fidelity "
          f"{found}/{total} ({100 * found / max(total, 1):.1f} %); rendered file accepted where the original is: "
          f"{sum(r['rendered'] == 'accepted' for r in accepted)}/{len(accepted)}; rendered accepted overall: "
          f"{sum(r['rendered'] == 'accepted' for r in ok)}/{len(ok)}")
    if hook.summary():
        print(hook.summary())


OWN_TABLE = {"lxc": "bench.import_lxc", "sssd": "bench.import_domain", "pacemaker": "bench.import_pacemaker",
             "corosync": "bench.import_corosync"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tool", default="haproxy", choices=sorted(TOOLS) + sorted(OWN_TABLE))
    p.add_argument("folders", nargs="*", type=Path, help=f"default: {CORPUS}/TOOL")
    p.add_argument("--only", default="", help="pacemaker, corosync: only the samples whose name holds this")
    args = p.parse_args()
    folders = args.folders or [CORPUS / args.tool]
    if args.tool in OWN_TABLE:
        from bench import import_common, import_pacemaker

        import_pacemaker.ONLY = args.only
        hook = importlib.import_module(OWN_TABLE[args.tool])
        sys.exit(import_common.main(args.tool, hook.run, folders))
    run(TOOLS[args.tool], folders)


if __name__ == "__main__":
    main()
