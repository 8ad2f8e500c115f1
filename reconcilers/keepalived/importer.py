"""`reconcile import keepalived FILE|--live`: manifests that reproduce a keepalived.conf.

Every block, keyword and value of the file is kept: what reconcile types goes into typed
fields (instances, scripts, tracking, notify programs, addresses, sync groups, virtual
servers), everything else into `extra` lines and `blocks`, as written. What reconcile adds
when it renders the manifests back is named in the notes: the explicit defaults keepalived
had assumed (`version`, `state`, `advert_int`, `priority`), one instance per address family,
`enable_script_security` and `script_user` where programs run, the drain track file.

Passwords (`auth_pass`, an SSL `password`) never go into a manifest: each becomes a secret
file under the secrets folder (written 0600 by `reconcile import`, controller/convert.py)
and a `{file: …}` reference to it. A file import cannot express fails with `file:line`.

The interface is every importer's (reconcilers/importing.py): `import_text(text, source,
placement, secrets_dir)` and `live(node)`. A keepalived.conf is one node's file (its
priorities, states and source addresses are that node's), so the placement is a node.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from reconcilers.importing import Imported, ImportProblem
from reconcilers.keepalived.conf import Stmt, SyntaxProblem, keepalived_word, parse, split_command
from reconcilers.keepalived.daemon import CONFIG
from schemas.keepalived import GLOBAL_TYPED, KEEPALIVED_NAME, NOTIFY_KEYWORDS
from schemas.virtual_ip import GARP_KEYWORDS

CHECK_TYPES = {"TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "PING_CHECK",
               "UDP_CHECK", "FILE_CHECK", "BFD_CHECK"}
NOTIFY_FIELDS = {v: k for k, v in NOTIFY_KEYWORDS.items()}
BOOL_WORDS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


class ImportError_(ValueError):
    """The file holds something a manifest cannot express; the message starts "line N: "
    (import_text names the file)."""


def _text(s: Stmt) -> str:
    """A statement as one verbatim line (quoting words that need it)."""
    return " ".join(keepalived_word(w) for w in s.words)


def _verbatim(stmts: list[Stmt], into: dict[str, Any], lines: str = "extra") -> None:
    """Statements carried as written: lines into `into[lines]`, blocks into `into["blocks"]`."""
    for s in stmts:
        if s.is_block:
            b: dict[str, Any] = {"block": _text(s)}
            _verbatim(s.body or [], b, "lines")
            into.setdefault("blocks", []).append(b)
        else:
            into.setdefault(lines, []).append(_text(s))


def _int(s: Stmt) -> int:
    try:
        return int(s.args[0])
    except (IndexError, ValueError):
        raise ImportError_(f"line {s.line}: {s.keyword}: expected a number, got {' '.join(s.args)!r}") from None


def _num(s: Stmt) -> int | float:
    try:
        value = float(s.args[0])
    except (IndexError, ValueError):
        raise ImportError_(f"line {s.line}: {s.keyword}: expected a number, got {' '.join(s.args)!r}") from None
    return int(value) if value == int(value) else value


def _command(s: Stmt, offset: int = 1) -> dict[str, Any]:
    """A program line: `keyword "program args" [user [group]]`."""
    if len(s.words) <= offset:
        raise ImportError_(f"line {s.line}: {s.keyword}: no program given")
    out: dict[str, Any] = {"command": split_command(s.words[offset])}
    rest = s.words[offset + 1:]
    if rest:
        out["user"] = rest[0]
    if len(rest) > 1:
        out["group"] = rest[1]
    return out


def _weighted(s: Stmt) -> dict[str, Any]:
    """`NAME [weight W] [reverse|noreverse]` of track_* blocks."""
    out: dict[str, Any] = {"name": s.keyword}
    words = s.args
    if "weight" in words and words.index("weight") + 1 < len(words):
        out["weight"] = int(words[words.index("weight") + 1])
    if "reverse" in words:
        out["reverse"] = True
    elif "noreverse" in words or "no_reverse" in words:
        out["reverse"] = False
    return out


def _track(block: Stmt) -> dict[str, Any]:
    kind = {"track_interface": "interfaces", "track_script": "scripts", "track_file": "files",
            "track_process": "processes", "track_bfd": "bfd"}[block.keyword]
    entries = []
    for s in block.body or []:
        entry = _weighted(s)
        if kind == "interfaces" and "reverse" in entry:
            entry["reverse"] = bool(entry["reverse"])
        entries.append(entry)
    return {kind: entries}


_ADDRESS_PAIRS = {"dev": "dev", "label": "label", "scope": "scope", "brd": "brd"}


def _address(s: Stmt) -> dict[str, Any]:
    words = s.words
    out: dict[str, Any] = {"address": words[0]}
    options: list[str] = []
    i = 1
    while i < len(words):
        w = words[i]
        if w in _ADDRESS_PAIRS and i + 1 < len(words):
            out[_ADDRESS_PAIRS[w]] = words[i + 1]
            i += 2
            continue
        if w == "no_track":
            out["noTrack"] = True
        else:
            options.append(w)
        i += 1
    if options:
        out["options"] = options
    return out


class Importer:
    """One keepalived.conf → manifests for one node."""

    def __init__(self, node: str, secrets_dir: Path):
        self.node = node
        self.secrets_dir = secrets_dir
        self.out = Imported()
        self.server_names: set[str] = set()
        self.global_version = 2
        self.runs_programs = False

    def secret(self, value: str, name: str) -> dict[str, str]:
        path = self.secrets_dir / name
        self.out.secrets[path] = value
        return {"file": str(path)}

    def run(self, text: str) -> Imported:
        try:
            stmts = parse(text)
        except SyntaxProblem as err:
            raise ImportError_(str(err)) from None
        for s in stmts:
            if s.keyword == "global_defs":
                for c in s.body or []:
                    if c.keyword == "vrrp_version":
                        self.global_version = _int(c)
        settings: dict[str, Any] = {}
        vips, servers = [], []
        for s in stmts:
            kw = s.keyword
            if kw == "global_defs" and s.is_block:
                settings["globalDefs"] = self.global_defs(s)
            elif kw == "vrrp_script" and s.is_block and s.args:
                settings.setdefault("scripts", {})[s.args[0]] = self.script(s)
            elif kw in ("track_file", "vrrp_track_file") and s.is_block and s.args:
                if kw == "vrrp_track_file":
                    self.out.notes.append(f"line {s.line}: vrrp_track_file is written track_file (its current name)")
                settings.setdefault("trackFiles", {})[s.args[0]] = self.track_file(s)
            elif kw == "vrrp_track_process" and s.is_block and s.args:
                settings.setdefault("trackProcesses", {})[s.args[0]] = self.track_process(s)
            elif kw == "vrrp_sync_group" and s.is_block and s.args:
                settings.setdefault("syncGroups", {})[s.args[0]] = self.sync_group(s)
            elif kw == "virtual_server_group" and s.is_block and s.args:
                settings.setdefault("virtualServerGroups", {})[s.args[0]] = [_text(c) for c in s.body or []]
            elif kw == "SSL" and s.is_block:
                settings["ssl"] = self.ssl(s)
            elif kw == "include" and not s.is_block:
                settings.setdefault("includes", []).append(s.args[0] if s.args else "")
            elif kw == "vrrp_instance" and s.is_block and s.args:
                vips.append(self.instance(s))
            elif kw == "virtual_server" and s.is_block:
                servers.append(self.virtual_server(s, len(servers)))
            else:
                _verbatim([s], settings, "lines")
        if self.runs_programs:
            g = settings.setdefault("globalDefs", {})
            if "scriptUser" not in g:
                g["scriptUser"] = "root"
                self.out.notes.append("programs run without script_user: keepalived ran them as root (or "
                                      "keepalived_script); the import says script_user root explicitly")
        if settings or not (vips or servers):
            name = self.node if re.fullmatch(KEEPALIVED_NAME, self.node) else "imported"
            self.out.documents.append(self.manifest("Keepalived", name, settings))
        self.out.documents += vips + servers
        return self.out

    def manifest(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        if not re.fullmatch(KEEPALIVED_NAME, name):
            raise ImportError_(f"{kind} name {name!r}: reconcile takes names of letters, digits, '_', '.', '-' "
                               "(at most 63, not starting with '.' or '-')")
        return {"apiVersion": "reconcile/v1", "kind": kind, "metadata": {"name": name},
                "spec": {"node": self.node, **spec}}

    # -- top-level blocks

    def global_defs(self, s: Stmt) -> dict[str, Any]:
        g: dict[str, Any] = {}
        extra = []
        for c in s.body or []:
            kw = c.keyword
            if kw == "router_id" and c.args:
                g["routerId"] = c.args[0]
            elif kw == "script_user" and c.args:
                g["scriptUser"] = c.args[0]
                if len(c.args) > 1:
                    g["scriptGroup"] = c.args[1]
            elif kw == "enable_script_security" and not c.args:
                g["enableScriptSecurity"] = True
            elif kw == "notification_email" and c.is_block:
                g["notificationEmail"] = [w for e in c.body or [] for w in e.words]
            elif kw == "notification_email_from" and c.args:
                g["notificationEmailFrom"] = c.args[0]
            elif kw == "smtp_server" and c.args:
                g["smtpServer"] = {"host": c.args[0], **({"port": int(c.args[1])} if len(c.args) > 1 else {})}
            elif kw == "smtp_helo_name" and c.args:
                g["smtpHeloName"] = c.args[0]
            elif kw == "smtp_connect_timeout" and c.args:
                g["smtpConnectTimeout"] = _int(c)
            elif kw in ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo") and c.args:
                key = {"notify_fifo": "notifyFifo", "vrrp_notify_fifo": "vrrpNotifyFifo",
                       "lvs_notify_fifo": "lvsNotifyFifo"}[kw]
                fifo = g.setdefault(key, {})
                fifo["path"] = c.args[0]
                if len(c.args) > 1:
                    fifo["user"] = c.args[1]
                if len(c.args) > 2:
                    fifo["group"] = c.args[2]
            elif kw in ("notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script"):
                key = {"notify_fifo_script": "notifyFifo", "vrrp_notify_fifo_script": "vrrpNotifyFifo",
                       "lvs_notify_fifo_script": "lvsNotifyFifo"}[kw]
                g.setdefault(key, {})["script"] = _command(c)
                self.runs_programs = True
            elif kw in ("startup_script", "shutdown_script"):
                g["startupScript" if kw == "startup_script" else "shutdownScript"] = _command(c)
                self.runs_programs = True
            elif kw in GLOBAL_TYPED or c.is_block:
                raise ImportError_(f"line {c.line}: global_defs: {kw} {' '.join(c.args)!r} is not understood")
            else:
                extra.append(_text(c))
        if extra:
            g["extra"] = extra
        return g

    def script(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extra = []
        for c in s.body or []:
            kw = c.keyword
            if kw == "script":
                out["command"] = _command(c)["command"]
                self.runs_programs = True
            elif kw in ("interval", "timeout", "rise", "fall") and c.args:
                out[kw] = _int(c)
            elif kw == "weight" and c.args:
                out["weight"] = int(c.args[0])
                if "reverse" in c.args[1:]:
                    out["reverse"] = True
            elif kw == "user" and c.args:
                out["user"] = c.args[0]
                if len(c.args) > 1:
                    out["group"] = c.args[1]
            elif kw == "init_fail" and not c.args:
                out["initFail"] = True
            else:
                extra.append(_text(c))
        if "command" not in out:
            raise ImportError_(f"line {s.line}: vrrp_script {s.args[0]}: no script line")
        if _looks_like_shell(out["command"]):
            self.out.notes.append(
                f"line {s.line}: vrrp_script {s.args[0]}: {' '.join(out['command'])!r} looks like a shell line, but "
                "keepalived runs it without a shell (the pipe or redirection is an argument): kept as keepalived "
                "runs it; ship a script file (spec.files) for what was meant")
        if extra:
            out["extra"] = extra
        return out

    def track_file(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in s.body or []:
            if c.keyword == "file" and c.args:
                out["file"] = c.args[0]
            elif c.keyword == "weight" and c.args:
                out["weight"] = int(c.args[0])
                if "reverse" in c.args[1:]:
                    out["reverse"] = True
            elif c.keyword == "init_file":
                out["initFile"] = {"value": int(c.args[0]) if c.args and c.args[0].lstrip("-").isdigit() else 0,
                                   "overwrite": "overwrite" in c.args}
            else:
                raise ImportError_(f"line {c.line}: track_file {s.args[0]}: {c.keyword} is not understood")
        return out

    def track_process(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = {"param_match": "paramMatch", "quorum": "quorum", "quorum_max": "quorumMax",
                 "fork_delay": "forkDelay", "terminate_delay": "terminateDelay", "delay": "delay"}
        for c in s.body or []:
            if c.keyword == "process":
                out["process"] = c.args
            elif c.keyword == "weight" and c.args:
                out["weight"] = int(c.args[0])
                if "reverse" in c.args[1:]:
                    out["reverse"] = True
            elif c.keyword == "full_command":
                out["fullCommand"] = True
            elif c.keyword in names and c.args:
                out[names[c.keyword]] = c.args[0] if c.keyword == "param_match" else _num(c)
            else:
                raise ImportError_(f"line {c.line}: vrrp_track_process {s.args[0]}: {c.keyword} is not understood")
        return out

    def sync_group(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {"instances": []}
        extra = []
        for c in s.body or []:
            if c.keyword == "group" and c.is_block:
                out["instances"] += [w for e in c.body or [] for w in e.words]
            elif c.keyword.startswith("track_") and c.is_block:
                out.setdefault("track", {}).update(_track(c))
            elif c.keyword in NOTIFY_FIELDS:
                out.setdefault("notify", {})[NOTIFY_FIELDS[c.keyword]] = _command(c)
                self.runs_programs = True
            else:
                extra.append(_text(c))
        if extra:
            out["extra"] = extra
        return out

    def ssl(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in s.body or []:
            if c.keyword == "password" and c.args:
                out["password"] = self.secret(c.args[0], "ssl.password")
            elif c.keyword in ("ca", "certificate", "key") and c.args:
                out[c.keyword] = c.args[0]
            else:
                raise ImportError_(f"line {c.line}: SSL: {c.keyword} is not understood")
        return out

    # -- vrrp_instance

    def instance(self, s: Stmt) -> dict[str, Any]:
        name = s.args[0]
        ka: dict[str, Any] = {}
        spec: dict[str, Any] = {"manager": "keepalived"}
        extra: list[str] = []
        track: dict[str, Any] = {}
        notify: dict[str, Any] = {}
        garp: dict[str, Any] = {}
        version = None
        for c in s.body or []:
            kw = c.keyword
            if kw == "interface" and c.args:
                spec["interface"] = c.args[0]
            elif kw == "state" and c.args and c.args[0] in ("MASTER", "BACKUP"):
                ka["state"] = c.args[0]
            elif kw == "virtual_router_id" and c.args:
                ka["routerId"] = _int(c)
            elif kw == "priority" and c.args:
                ka["priority"] = {self.node: _int(c)}
            elif kw == "advert_int" and c.args:
                ka["advertInterval"] = _num(c)
            elif kw == "version" and c.args:
                version = _int(c)
            elif kw == "nopreempt":
                ka["preempt"] = False
                if c.args:
                    self.out.notes.append(f"line {c.line}: nopreempt {' '.join(c.args)}: keepalived ignores the "
                                          "argument; written as nopreempt")
            elif kw == "preempt_delay" and c.args:
                ka["preemptDelay"] = _num(c)
            elif kw in ("unicast_src_ip", "mcast_src_ip") and c.args:
                ka["unicastSrcIp" if kw == "unicast_src_ip" else "mcastSrcIp"] = c.args[0]
            elif kw == "unicast_peer" and c.is_block:
                ka["unicastPeers"] = [" ".join(p.words) for p in c.body or []]
            elif kw == "mcast_dst_ip" and c.args:
                ka["mcastDstIp"] = c.args[0]
            elif kw == "native_ipv6" and not c.args:
                ka["nativeIpv6"] = True
            elif kw == "authentication" and c.is_block:
                ka["authentication"] = self.authentication(c, name)
            elif kw == "virtual_ipaddress" and c.is_block:
                spec["addresses"] = [_address(a) for a in c.body or []]
            elif kw == "virtual_ipaddress_excluded" and c.is_block:
                ka["excludedAddresses"] = [_address(a) for a in c.body or []]
            elif kw in ("virtual_routes", "virtual_rules") and c.is_block:
                ka["routes" if kw == "virtual_routes" else "rules"] = [_text(r) for r in c.body or []]
            elif kw in ("track_interface", "track_script", "track_file", "track_process", "track_bfd") and c.is_block:
                track.update(_track(c))
            elif kw in NOTIFY_FIELDS and not c.is_block:
                notify[NOTIFY_FIELDS[kw]] = _command(c)
                self.runs_programs = True
            elif kw in GARP_KEYWORDS.values() and len(c.args) == 1 and not c.is_block:
                garp[next(k for k, v in GARP_KEYWORDS.items() if v == kw)] = _int(c)
            elif c.is_block:
                raise ImportError_(f"line {c.line}: vrrp_instance {name}: block {kw} is not understood")
            else:
                extra.append(_text(c))
        if "interface" not in spec:
            spec["interface"] = "eth0"
            self.out.notes.append(f"line {s.line}: vrrp_instance {name} names no interface: the import says eth0")
        if "routerId" not in ka:
            raise ImportError_(f"line {s.line}: vrrp_instance {name}: no virtual_router_id")
        families = {_family(a["address"]) for a in spec.get("addresses", [])}
        v6 = 6 in families and 4 not in families or ka.get("nativeIpv6")
        ka["version"] = version if version is not None else (3 if v6 else self.global_version)
        if version is None:
            self.out.notes.append(f"vrrp_instance {name}: VRRP version {ka['version']} (keepalived's default here) "
                                  "is written explicitly")
        if "advertInterval" not in ka:
            ka["advertInterval"] = 1
        ka.setdefault("priority", {self.node: 100})
        if "unicastPeers" not in ka:
            ka["multicast"] = True
            if "unicastSrcIp" in ka:
                ka["mcastSrcIp"] = ka.pop("unicastSrcIp")
        for key in ("unicastSrcIp", "mcastSrcIp"):
            if key in ka:
                ka[key] = {self.node: ka[key]}
        if ka.get("authentication") and ka["version"] != 2:
            raise ImportError_(f"line {s.line}: vrrp_instance {name}: authentication with VRRP version "
                               f"{ka['version']}: keepalived ignores it; drop one of them")
        if len(families) > 1:
            self.out.notes.append(f"vrrp_instance {name}: addresses of both families: reconcile renders one instance "
                                  f"per family ({name} and {name}_v{6 if _family(spec['addresses'][0]['address']) == 4 else 4})")
        if track:
            ka["track"] = track
        if notify:
            ka["notify"] = notify
        if garp:
            ka["garp"] = garp
        if extra:
            ka["extra"] = extra
        spec["keepalived"] = ka
        return self.manifest("VirtualIP", name, spec)

    def authentication(self, s: Stmt, name: str) -> dict[str, Any]:
        kinds = [c.args[0] for c in s.body or [] if c.keyword == "auth_type" and c.args]
        passwords = [c.args[0] for c in s.body or [] if c.keyword == "auth_pass" and c.args]
        if not kinds or not passwords or kinds[0] not in ("PASS", "AH"):
            raise ImportError_(f"line {s.line}: authentication needs auth_type PASS|AH and auth_pass")
        return {"type": kinds[0], "password": self.secret(passwords[0], f"{name}.auth_pass")}

    # -- virtual_server

    def virtual_server(self, s: Stmt, index: int) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        words = s.args
        if words[:1] == ["group"] and len(words) > 1:
            spec["group"] = words[1]
            name = f"vs_group_{words[1]}"
        elif words[:1] == ["fwmark"] and len(words) > 1:
            spec["fwmark"] = int(words[1])
            name = f"vs_fwmark_{words[1]}"
        elif words:
            spec["address"] = words[0]
            if len(words) > 1:
                spec["port"] = int(words[1])
            name = "vs_" + re.sub(r"[^A-Za-z0-9]", "_", words[0]) + (f"_{words[1]}" if len(words) > 1 else "")
        else:
            raise ImportError_(f"line {s.line}: virtual_server without an address, fwmark or group")
        for c in s.body or []:
            if c.keyword == "protocol" and c.args:
                spec["protocol"] = c.args[0]
            elif c.keyword == "real_server" and c.is_block:
                spec.setdefault("realServers", []).append(self.real_server(c))
            elif c.keyword in ("quorum_up", "quorum_down"):
                spec["quorumUp" if c.keyword == "quorum_up" else "quorumDown"] = _command(c)
                self.runs_programs = True
            else:
                _verbatim([c], spec)
        if name in self.server_names:  # the same address and port for another protocol
            name = f"{name}_{index}"
        self.server_names.add(name)
        return self.manifest("VirtualServer", name, spec)

    def real_server(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {"address": s.args[0]}
        if len(s.args) > 1:
            out["port"] = int(s.args[1])
        for c in s.body or []:
            if c.keyword in ("notify_up", "notify_down"):
                out["notifyUp" if c.keyword == "notify_up" else "notifyDown"] = _command(c)
                self.runs_programs = True
            elif c.keyword in CHECK_TYPES and c.is_block:
                out.setdefault("checks", []).append(self.check(c))
            else:
                _verbatim([c], out)
        return out

    def check(self, s: Stmt) -> dict[str, Any]:
        out: dict[str, Any] = {"type": s.keyword}
        for c in s.body or []:
            if c.keyword == "misc_path":
                out.setdefault("misc", {}).update(_command(c))
                self.runs_programs = True
            elif c.keyword == "user" and s.keyword == "MISC_CHECK" and c.args:
                out.setdefault("misc", {})["user"] = c.args[0]
                if len(c.args) > 1:
                    out["misc"]["group"] = c.args[1]
            else:
                _verbatim([c], out)
        return out


def _family(address: str) -> int:
    try:
        return ipaddress.ip_interface(address).version
    except ValueError:
        return 4


def _looks_like_shell(argv: list[str]) -> bool:
    return any(a in ("|", "||", "&&", ";", ">", ">>", "<", "2>&1") or a.startswith(("$(", "`")) for a in argv[1:])


_LINE = re.compile(r"^line (\d+): ")


def import_text(text: str, source: str, placement: dict[str, str], secrets_dir: Path) -> Imported:
    """Manifests for the node `placement` names from a keepalived.conf's text (`source`
    names it in problems and notes). Raises ImportProblem naming `source:line`."""
    node = placement.get("node")
    if not node:
        raise ImportProblem(f"{source}: a keepalived.conf is one node's file (its priorities, states and source "
                            "addresses are that node's): import it with --node NAME, once per node")
    try:
        imported = Importer(node, secrets_dir).run(text)
    except ImportError_ as err:
        raise ImportProblem(_LINE.sub(lambda m: f"{source}:{m.group(1)}: ", str(err), 1)
                            if _LINE.match(str(err)) else f"{source}: {err}") from None
    imported.notes = [_LINE.sub(lambda m: f"{source}:{m.group(1)}: ", n, 1) for n in imported.notes]
    return imported


def live(node: str) -> tuple[str, str]:
    """The keepalived.conf this node runs."""
    try:
        return str(CONFIG), CONFIG.read_text()
    except FileNotFoundError:
        raise ImportProblem(f"{CONFIG}: keepalived has no configuration on this node") from None
