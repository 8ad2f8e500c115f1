"""Cluster: Corosync 3 + Pacemaker 2 on this node, from a Cluster manifest.

Per node (every member does this for itself): the authkey, corosync.conf (validated with
`corosync -t`, installed atomically, reloaded with `corosync-cfgtool -R` when Corosync
runs), and Corosync and Pacemaker started where they do not run. Cluster-wide (only the
agent on Pacemaker's DC): the cluster properties in the CIB's crm_config, with
`stonith-enabled` always stated.

The object's state, in the shape `observe` and `desired` share::

    {"corosync": {"clusterName", "transport", "token", "crypto", "nodes", "quorum"},
     "file": "generated",                       # corosync.conf is exactly what we render
     "authkey": "<secret: in sync>",            # only with spec.authkey; never the key
     "daemons": {"corosync": "running", "pacemaker": "running"},
     "properties": {"stonith-enabled": "false", ...}}

A node that never ran Pacemaker gets its first CIB seeded with the cluster properties
before pacemakerd starts, so that a new cluster elects its first DC after the manifest's
`dc-deadtime` instead of Pacemaker's 20 s, and never runs a moment with stonith-enabled
as anything but what git says. A node joining a running cluster takes the cluster's CIB
(ours is the oldest possible version), so the seed can never overwrite a live cluster.
"""
from __future__ import annotations

import base64
import grp
import hashlib
import ipaddress
import logging
import os
import pwd
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

from reconcilers import pacemaker, pacemaker_health
from reconcilers.base import (
    GENERATED_HEADER, NODE, ApplyError, AtomicWriter, Change, CommandError, Deferred, Desired, HealthReport, Node,
    PerObject, UnsafeValue, enable_unit, one_line, read_secret, pid_alive, start_unit, systemd_running, unit_field,
    unit_notes, unit_states,
)
from schemas.common import duration_ms

log = logging.getLogger("reconcile.cluster")

COROSYNC_CONF = Path("/etc/corosync/corosync.conf")
CONFFILE = Path("/etc/corosync/corosync.conf")  # its name in dpkg's records, wherever it is read from
AUTHKEY = Path("/etc/corosync/authkey")
COROSYNC_LOG = "/var/log/corosync/corosync.log"
COROSYNC_PIDFILE = Path("/run/corosync.pid")
PACEMAKERD_PIDFILE = Path("/run/pacemakerd.pid")
PACEMAKERD = "/usr/sbin/pacemakerd"
PACEMAKER_DEFAULTS = Path("/etc/default/pacemaker")
CIB_DIR = Path("/var/lib/pacemaker/cib")
DPKG_STATUS = Path("/var/lib/dpkg/status")
UNITS = ("corosync.service", "pacemaker.service")

CRYPTO = "aes256/sha256"
START_WAIT_SECONDS = 20.0
STOP_WAIT_SECONDS = 600.0  # Pacemaker moves every resource away before it ends
WATCH_SECONDS = 2.0
# Changing these in corosync.conf needs Corosync restarted on every node; a reload does
# not apply them (corosync.conf(5)). We never restart it ourselves: that moves resources.
RESTART_FIELDS = ("clusterName", "transport", "crypto")
SECRET_IN_SYNC, SECRET_DIFFERS = "<secret: in sync>", "<secret: differs>"


# --- corosync.conf: render and parse -----------------------------------------------------


def corosync_settings(name: str, spec: Any) -> dict[str, Any]:
    """The normalized Corosync settings of a Cluster manifest."""
    two_node = spec.quorum.twoNode if spec.quorum.twoNode is not None else len(spec.nodes) == 2
    wait_for_all = spec.quorum.waitForAll if spec.quorum.waitForAll is not None else two_node
    return {
        "clusterName": name,
        "transport": spec.transport,
        "token": duration_ms(spec.token),
        "crypto": CRYPTO if spec.authkey is not None else "none",
        "nodes": [{"name": n.name, "id": n.id, "address": n.address.split("/")[0]} for n in spec.nodes],
        "quorum": {"twoNode": two_node, "waitForAll": wait_for_all},
    }


def corosync_value(value: Any) -> str:
    """The value of a `key: value` line of corosync.conf, as it is; refused (UnsafeValue)
    when it could change the file's structure: Corosync reads any line holding '{' as the
    start of a section and a line holding '}' as an end, '#' starts a comment, blanks
    around a value are dropped, and a line over 512 bytes is an error."""
    text = one_line(str(value), "corosync.conf", max_length=255)
    if not text or text != text.strip() or any(c in text for c in "{}#"):
        raise UnsafeValue(f"corosync.conf: refused to write {text!r}: a value there may not be empty, start or end "
                          "with a blank, or hold '{', '}' or '#'")
    return text


def render_corosync_conf(settings: dict[str, Any], explicit_wait_for_all: bool, keyfile: str = str(AUTHKEY)) -> str:
    v = corosync_value
    lines = [f"# {GENERATED_HEADER}", "totem {", "    version: 2",
             f"    cluster_name: {v(settings['clusterName'])}",
             f"    transport: {v(settings['transport'])}",
             f"    token: {v(settings['token'])}"]
    if settings["crypto"] == "none":
        lines += ["    crypto_cipher: none", "    crypto_hash: none"]
    else:
        cipher, hash_ = settings["crypto"].split("/")
        lines += [f"    crypto_cipher: {v(cipher)}", f"    crypto_hash: {v(hash_)}", f"    keyfile: {v(keyfile)}"]
    lines += ["}", "", "nodelist {"]
    for n in settings["nodes"]:
        lines += ["    node {", f"        name: {v(n['name'])}", f"        nodeid: {v(n['id'])}",
                  f"        ring0_addr: {v(n['address'])}", "    }"]
    lines += ["}", "", "quorum {", "    provider: corosync_votequorum"]
    quorum = settings["quorum"]
    if quorum["twoNode"]:
        lines.append("    two_node: 1")
    if explicit_wait_for_all:
        lines.append(f"    wait_for_all: {1 if quorum['waitForAll'] else 0}")
    lines += ["}", "", "logging {", "    to_logfile: yes", f"    logfile: {COROSYNC_LOG}",
              "    to_syslog: yes", "    to_stderr: no", "    timestamp: on", "}", ""]
    return "\n".join(lines)


def parse_corosync_conf(text: str) -> dict[str, Any]:
    """corosync.conf as nested dicts; a section's value is a list of its occurrences.

    `{"totem": [{"version": "2", ...}], "nodelist": [{"node": [{...}, {...}]}]}`
    """
    root: dict[str, Any] = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            section: dict[str, Any] = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(section)
            stack.append(section)
        elif line == "}":
            if len(stack) > 1:
                stack.pop()
        elif ":" in line:
            key, _, value = line.partition(":")
            stack[-1][key.strip()] = value.strip()
    return root


def _first(sections: dict[str, Any], name: str) -> dict[str, Any]:
    found = sections.get(name) or [{}]
    return found[0] if isinstance(found, list) else {}


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "yes", "on", "true")


def observed_settings(conf: dict[str, Any]) -> dict[str, Any]:
    """The normalized settings of a parsed corosync.conf (same shape as `corosync_settings`)."""
    totem = _first(conf, "totem")
    quorum = _first(conf, "quorum")
    nodes = []
    for n in _first(conf, "nodelist").get("node", []):
        node_id = n.get("nodeid", "")
        nodes.append({"name": n.get("name", ""), "id": int(node_id) if node_id.isdigit() else node_id,
                      "address": n.get("ring0_addr", "")})
    cipher, hash_ = totem.get("crypto_cipher", "none"), totem.get("crypto_hash", "none")
    token = totem.get("token", "3000")
    two_node = bool(_flag(quorum.get("two_node")))
    wait = _flag(quorum.get("wait_for_all"))
    return {
        "clusterName": totem.get("cluster_name", ""),
        "transport": totem.get("transport", "knet"),
        "token": int(token) if token.isdigit() else token,
        "crypto": "none" if cipher == "none" else f"{cipher}/{hash_}",
        "nodes": nodes,
        "quorum": {"twoNode": two_node, "waitForAll": two_node if wait is None else wait},
    }


def read_authkey(ref: Any, node: Node) -> bytes:
    """The authkey a SecretRef names: a file holds the raw key as corosync-keygen writes it
    (binary), an environment variable holds it base64-encoded."""
    if getattr(ref, "file", None):
        try:
            return Path(ref.file).read_bytes()
        except FileNotFoundError:
            raise ApplyError(f"secret file {ref.file} (the corosync authkey) does not exist on node {node.name}; "
                             f"create it with `corosync-keygen -k {ref.file}` and copy it to every node") from None
        except OSError as err:
            raise ApplyError(f"cannot read secret file {ref.file}: {err.strerror}") from None
    text = read_secret(ref, node)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ApplyError(f"environment variable {ref.env} must hold the corosync authkey base64-encoded") from None


# --- the daemons -------------------------------------------------------------------------


def _process_running(comm: str) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() == comm:
                    return True
            except OSError:
                continue
    return False


def daemons_running(node: Node) -> dict[str, bool]:
    if systemd_running():
        states = unit_states(node, UNITS)
        return {u.removesuffix(".service"): s.active in ("active", "reloading") for u, s in states.items()}
    return {
        "corosync": pid_alive(COROSYNC_PIDFILE) is not None or _process_running("corosync"),
        "pacemaker": pid_alive(PACEMAKERD_PIDFILE) is not None or _process_running("pacemakerd"),
    }


def _environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines of /etc/default/pacemaker, as systemd's EnvironmentFile= reads them."""
    env: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return env
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    return env


# --- the distribution's default cluster ---------------------------------------------------


def untouched_package_file(path: Path, text: str, status: Path | None = None) -> bool:
    """Whether `text` is `path` exactly as its Debian package shipped it: the md5 sum dpkg
    recorded for that conffile (its own test of "modified by the administrator")."""
    try:
        lines = (status or DPKG_STATUS).read_text(errors="replace").splitlines()
    except OSError:
        return False
    prefix = f" {path} "
    recorded = {line.split()[1] for line in lines if line.startswith(prefix) and len(line.split()) >= 2}
    return hashlib.md5(text.encode()).hexdigest() in recorded


def default_cluster(text: str, cib: ET.Element | None, status: Path | None = None) -> str | None:
    """The name of the packages' default one-node cluster when that is all this node has
    (corosync.conf untouched since the package installed it, one node, and a CIB without
    resources or constraints), else None: any other cluster is never replaced."""
    if GENERATED_HEADER in text or not untouched_package_file(CONFFILE, text, status):
        return None
    settings = observed_settings(parse_corosync_conf(text))
    if len(settings["nodes"]) != 1:
        return None
    if cib is not None:
        for section in ("resources", "constraints"):
            found = cib.find(f"configuration/{section}")
            if found is not None and len(found):
                return None
    return settings["clusterName"]


# --- the reconciler ----------------------------------------------------------------------


class ClusterReconciler(PerObject):
    """Corosync + Pacemaker for the Cluster this node is a member of."""

    kind = "Cluster"

    def __init__(self) -> None:
        self._spec: dict[str, Any] = {}  # cluster name → spec, from desired()
        self._settings: dict[str, dict[str, Any]] = {}
        self._enforce: dict[str, bool] = {}  # metadata.drift: enforce (unmask/enable held units)

    # --- desired -------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        out: dict[str, Desired] = {}
        for cluster in tree.on_node("Cluster", node.name):
            spec = cluster.spec
            if spec.stack != "pacemaker":
                continue  # a plain group of nodes: nothing runs for it
            name = cluster.metadata.name
            settings = corosync_settings(name, spec)
            self._spec[name], self._settings[name] = spec, settings
            state: dict[str, Any] = {"corosync": settings, "file": "generated"}
            if spec.authkey is not None:
                state["authkey"] = SECRET_IN_SYNC
            state["daemons"] = {"corosync": "running", "pacemaker": "running"}
            if systemd_running():  # started at boot, as the packages install them
                state["units"] = {"corosync": "enabled", "pacemaker": "enabled"}
            state["properties"] = self._properties(spec)
            self._enforce[name] = cluster.metadata.drift == "enforce"
            out[name] = Desired(state)
        return {self.kind: out}

    @staticmethod
    def _properties(spec: Any) -> dict[str, str]:
        props = {"stonith-enabled": "true" if spec.stonithEnabled else "false"}
        props.update(spec.properties)
        return props

    def _render(self, name: str, keyfile: str = str(AUTHKEY)) -> str:
        spec = self._spec[name]
        return render_corosync_conf(self._settings[name], spec.quorum.waitForAll is not None, keyfile)

    # --- observe -------------------------------------------------------------------------

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return {self.kind: {}}
        settings = observed_settings(parse_corosync_conf(text))
        name = settings["clusterName"]
        state: dict[str, Any] = {"corosync": settings}
        if name in self._spec and text == self._render(name):
            state["file"] = "generated"
        else:
            state["file"] = "edited" if GENERATED_HEADER in text else "not written by reconcile"
        spec = self._spec.get(name)
        if spec is not None and spec.authkey is not None:
            state.update(self._observe_authkey(spec, node))
        if systemd_running():  # one `systemctl show` for both: active and enabled
            units = unit_states(node, UNITS)
            running = {u.removesuffix(".service"): s.active in ("active", "reloading") for u, s in units.items()}
            state["units"] = unit_field(units)
        else:
            running = daemons_running(node)
        state["daemons"] = {d: "running" if up else "stopped" for d, up in running.items()}
        if running["pacemaker"]:
            wanted = list(self._properties(spec)) if spec is not None else []
            try:
                crm_config = pacemaker.query_cib(node, scope="crm_config", local=True)
                state["properties"] = pacemaker.observed_properties(crm_config, wanted)
            except pacemaker.CibUnavailable:
                pass  # Pacemaker is starting: properties unknown, compared on the next pass
        return {self.kind: {name: state}}

    @staticmethod
    def _observe_authkey(spec: Any, node: Node) -> dict[str, str]:
        """Compare the installed key with the secret here; only a token leaves."""
        try:
            installed = AUTHKEY.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            wanted = read_authkey(spec.authkey, node)
        except ApplyError:
            return {"authkey": SECRET_DIFFERS}  # apply says why
        return {"authkey": SECRET_IN_SYNC if installed == wanted else SECRET_DIFFERS}

    # --- health ----------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Daemons, DC, quorum and members online, from one crm_mon: the Cluster object's
        health and the node's "pacemaker" facet."""
        out = {}
        for name, spec in self._spec.items():
            if name not in desired.get(self.kind, {}):
                continue
            daemons = daemons_running(node)
            snap = pacemaker_health.read(node) if all(daemons.values()) else "daemons not running"
            status = snap.status if isinstance(snap, pacemaker_health.Snapshot) else None
            out[name] = pacemaker_health.cluster_health(status, [n.name for n in spec.nodes], daemons,
                                                        snap if isinstance(snap, str) else "")
        report: HealthReport = {self.kind: out}
        if out:
            report[NODE] = {"pacemaker": next(iter(out.values()))}
        return report

    # --- validate and explain (read-only) ------------------------------------------------

    def validate(self, node: Node) -> list[str]:
        problems = []
        known = None
        for name, spec in self._spec.items():
            try:
                self._check_conf(name, node, COROSYNC_CONF.parent)
            except ApplyError as err:
                problems.append(f"Cluster {name}: {err}")
            if spec.properties and known is None:
                known = pacemaker.known_properties(node) or set()
            for prop in spec.properties:
                if known and prop not in known:
                    problems.append(f"Cluster {name}: spec.properties.{prop}: Pacemaker {prop!r} is not a cluster "
                                    "property this Pacemaker knows (see `man pacemaker-schedulerd`)")
        return problems

    def _check_conf(self, name: str, node: Node, folder: Path | None = None) -> None:
        """`corosync -t` on the rendered corosync.conf in a temp folder (with a temp copy of
        the authkey). When this machine does not hold the node's address (validating a tree
        for another machine, in CI), the node's address is swapped for 127.0.0.1 so the rest
        is still checked by Corosync."""
        spec = self._spec[name]
        tmpdir = tempfile.mkdtemp(prefix="reconcile-corosync-")
        try:
            keyfile = str(AUTHKEY)
            if spec.authkey is not None:
                keyfile = os.path.join(tmpdir, "authkey")
                fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(read_authkey(spec.authkey, node))
            text = self._render(name, keyfile)
            me = next((n for n in self._settings[name]["nodes"] if n["name"] == node.name), None)
            if me is not None and not _address_is_local(me["address"]):
                text = text.replace(f"ring0_addr: {me['address']}\n", "ring0_addr: 127.0.0.1\n")
            # corosync -t logs to the logfile the config names: the real one stays untouched
            text = text.replace(f"logfile: {COROSYNC_LOG}\n", f"logfile: {tmpdir}/corosync.log\n")
            conf = os.path.join(tmpdir, "corosync.conf")
            with open(conf, "w") as f:
                f.write(text)
            corosync_check(node, Path(conf))
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            return ["stops Pacemaker (its resources move to other nodes) and Corosync on this node, "
                    "and removes the generated corosync.conf"]
        notes = []
        observed = change.observed or {}
        default = self._default_cluster(node)
        if default is not None:
            notes.append(f"replaces the packages' default one-node cluster {default!r} (untouched {COROSYNC_CONF}, "
                         "no resources): stops Pacemaker and Corosync, sets its empty CIB aside, starts cluster "
                         f"{change.name!r}")
        elif observed.get("file") == "not written by reconcile" or (change.action == "create" and COROSYNC_CONF.exists()):
            notes.append(f"replaces {COROSYNC_CONF}, which reconcile did not write")
        if any(v != "enabled" for v in (observed.get("units") or {}).values()):
            notes += unit_notes(node, UNITS, self._enforce.get(change.name, False))
        running = (observed.get("daemons") or {}).get("corosync") == "running"
        before, after = observed.get("corosync") or {}, (change.desired or {}).get("corosync") or {}
        restart = [f for f in RESTART_FIELDS if f in before and before.get(f) != after.get(f)]
        if observed.get("authkey") == SECRET_DIFFERS:
            restart.append("authkey")
        if running and restart:
            notes.append(f"{', '.join(restart)} take effect only when Corosync restarts on every node; reconcile "
                         "does not restart it (that would move resources)")
        if "properties" in observed and observed["properties"] != (change.desired or {}).get("properties"):
            notes += self._simulate_properties(change, node)
        return notes

    def _simulate_properties(self, change: Change, node: Node) -> list[str]:
        try:
            live = pacemaker.query_cib(node)
        except pacemaker.CibUnavailable:
            return []
        candidate = pacemaker.set_properties(live, (change.desired or {}).get("properties", {}))
        actions = pacemaker.simulate(node, candidate)
        return [f"crm_simulate: {a.describe()}" for a in actions] or ["crm_simulate: no resource would change"]

    # --- apply ---------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        if change.action == "delete":
            self._delete(change.name, node)
            return
        name = change.name
        spec = self._spec[name]
        enforce = self._enforce.get(name, False)
        running = daemons_running(node)
        if self._default_cluster(node) is not None:
            self._leave_default_cluster(node, running)
            running = {"corosync": False, "pacemaker": False}
        self._refuse_foreign(name, running["corosync"])
        writer = AtomicWriter(node)
        key_changed = False
        if spec.authkey is not None:
            key_changed = writer.write(AUTHKEY, read_authkey(spec.authkey, node), mode=0o400)
        conf_changed = writer.write(COROSYNC_CONF, self._render(name), mode=0o644,
                                    validate=lambda tmp: corosync_check(node, tmp))
        if running["corosync"]:
            if conf_changed:
                node.run(["corosync-cfgtool", "-R"], timeout=30)
            if key_changed:
                log.warning("the corosync authkey changed on %s: it takes effect when Corosync restarts", node.name)
        else:
            self._start_corosync(node, enforce)
        if not running["pacemaker"]:
            self._seed_cib(spec, node)
            self._start_pacemaker(node, enforce)
        self._apply_properties((change.desired or {}).get("properties", {}), node)
        if systemd_running():  # running, but not started at boot: enabled, unless an operator's hold
            for state in unit_states(node, UNITS).values():
                enable_unit(node, state, enforce)

    def _apply_properties(self, desired: dict[str, str], node: Node) -> None:
        """crm_config, by the DC only. A node that just started Pacemaker may not have the
        cluster's CIB yet, so the properties are read again once there is a DC."""
        if self._properties_now(node, desired) == desired:
            return
        dc = pacemaker.wait_for_dc(node)
        if self._properties_now(node, desired) == desired:
            return
        if dc != node.name:
            raise Deferred(f"cluster properties are applied by the DC {dc}")
        pacemaker.update_cib(node, lambda cib: pacemaker.set_properties(cib, desired), missing_stonith_ok=True)

    @staticmethod
    def _properties_now(node: Node, desired: dict[str, str]) -> dict[str, str] | None:
        try:
            crm_config = pacemaker.query_cib(node, scope="crm_config", local=True)
        except pacemaker.CibUnavailable:
            return None
        return pacemaker.observed_properties(crm_config, list(desired))

    # --- watch ---------------------------------------------------------------------------

    def watch(self, node: Node) -> Iterator[str]:
        """Yield when corosync.conf or the authkey change, or Corosync or Pacemaker stop or
        start (checked every few seconds: a stat and a look at the pid files). Cluster
        properties live in the CIB, whose changes the ClusterResource watch reports."""
        last = _fingerprint(node)
        while True:
            time.sleep(WATCH_SECONDS)
            current = _fingerprint(node)
            if current != last:
                yield "corosync.conf, the authkey or the Corosync/Pacemaker daemons changed"
            last = current

    def _refuse_foreign(self, name: str, corosync_running: bool) -> None:
        """Never take over a running cluster that reconcile did not set up."""
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return
        if GENERATED_HEADER in text or not corosync_running:
            return
        other = observed_settings(parse_corosync_conf(text))["clusterName"]
        if other != name:
            raise ApplyError(f"Corosync runs cluster {other!r} from a {COROSYNC_CONF} that reconcile did not write; "
                             f"refusing to replace it with cluster {name!r}. Stop that cluster first, or name the "
                             f"Cluster manifest {other!r} to adopt it.")

    def _default_cluster(self, node: Node) -> str | None:
        """The packages' default cluster, if that is what this node has (see default_cluster)."""
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return None
        if GENERATED_HEADER in text:
            return None
        cib = None
        if daemons_running(node)["pacemaker"]:
            try:
                cib = pacemaker.query_cib(node, local=True)
            except pacemaker.CibUnavailable:
                return None  # cannot tell whether it has resources: not replaced
        elif (CIB_DIR / "cib.xml").exists():
            try:
                cib = pacemaker.parse_xml((CIB_DIR / "cib.xml").read_text())
            except (OSError, ET.ParseError):
                return None
        return default_cluster(text, cib)

    def _leave_default_cluster(self, node: Node, running: dict[str, bool]) -> None:
        """Stop the default cluster (it runs nothing) and set its CIB aside, so that this
        node starts the manifest's cluster from the seeded CIB, not from `debian`'s."""
        if running["pacemaker"] or running["corosync"]:
            log.info("stopping the packages' default cluster on %s to replace it", node.name)
            if systemd_running():  # one call: pacemaker stops first (it requires corosync)
                node.run(["systemctl", "stop", "pacemaker.service", "corosync.service"], timeout=STOP_WAIT_SECONDS)
            else:
                if running["pacemaker"]:
                    node.run(["pacemakerd", "--shutdown"], timeout=60)
                    _wait_stopped(node, "pacemaker")
                if running["corosync"]:
                    node.run(["corosync-cfgtool", "-H"], timeout=60)
                    _wait_stopped(node, "corosync")
        aside = CIB_DIR.with_name("cib.before-reconcile")
        files = [f for f in CIB_DIR.glob("cib*") if f.is_file()] if CIB_DIR.is_dir() else []
        if files:
            node.runner.guard("write", [str(aside)], read_only=False)
            aside.mkdir(mode=0o750, exist_ok=True)
            for f in files:
                os.replace(f, aside / f.name)

    def _start_corosync(self, node: Node, enforce: bool = False) -> None:
        if systemd_running():
            start_unit(node, "corosync.service", enforce)
        else:
            node.run(["corosync"], timeout=60)  # forks into the background, writes /run/corosync.pid
        deadline = time.monotonic() + START_WAIT_SECONDS
        while True:
            result = node.run(["corosync-cfgtool", "-s"], read_only=True, check=False, timeout=10)
            if result.rc == 0:
                return
            if time.monotonic() > deadline:
                raise ApplyError(f"Corosync did not come up within {START_WAIT_SECONDS:.0f}s on {node.name}: "
                                 f"{(result.stderr or result.stdout).strip()[-300:]} (see {COROSYNC_LOG})")
            time.sleep(0.2)

    def _start_pacemaker(self, node: Node, enforce: bool = False) -> None:
        if systemd_running():
            start_unit(node, "pacemaker.service", enforce, timeout=120)
            return
        # pacemakerd always stays in the foreground: start-stop-daemon detaches it, with
        # the environment systemd would give it from /etc/default/pacemaker.
        node.run(["start-stop-daemon", "--start", "--quiet", "--background", "--make-pidfile",
                  "--pidfile", str(PACEMAKERD_PIDFILE), "--exec", PACEMAKERD],
                 env=_environment_file(PACEMAKER_DEFAULTS), timeout=30)
        deadline = time.monotonic() + START_WAIT_SECONDS
        while True:
            try:
                pacemaker.cluster_status(node)
                return
            except pacemaker.CibUnavailable as err:
                if pid_alive(PACEMAKERD_PIDFILE) is None:
                    raise ApplyError(f"pacemakerd exited right after its start on {node.name} "
                                     "(see /var/log/pacemaker/pacemaker.log)") from None
                if time.monotonic() > deadline:
                    raise ApplyError(f"Pacemaker did not answer within {START_WAIT_SECONDS:.0f}s on {node.name}: "
                                     f"{err}") from None
            time.sleep(0.3)

    def _seed_cib(self, spec: Any, node: Node) -> None:
        """First CIB of a node that never ran Pacemaker: the cluster properties, version 0.1.0."""
        if (CIB_DIR / "cib.xml").exists() or any(CIB_DIR.glob("cib-*.raw")):
            return
        seed = pacemaker.empty_cib(node, {})
        seed.attrib.pop("have-quorum", None)
        pacemaker.set_properties(seed, self._properties(spec))
        try:
            owner = (pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid)
        except KeyError:
            return  # not a Pacemaker install we know: let Pacemaker create its own CIB
        text = ET.tostring(seed, encoding="unicode") + "\n"

        def check(tmp: Path) -> None:
            errors = pacemaker.verify(node, pacemaker.parse_xml(tmp.read_text()), missing_stonith_ok=True)
            if errors:
                raise ApplyError("the first CIB for this node does not verify: " + "; ".join(errors[:3]))

        AtomicWriter(node).write(CIB_DIR / "cib.xml", text, mode=0o600, owner=owner, validate=check)

    def _delete(self, name: str, node: Node) -> None:
        """The Cluster left git: leave it, gracefully, if this node still runs it from our file."""
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return
        if GENERATED_HEADER not in text or observed_settings(parse_corosync_conf(text))["clusterName"] != name:
            return  # not ours, or already rewritten for another cluster
        running = daemons_running(node)
        if running["pacemaker"]:
            if systemd_running():
                node.run(["systemctl", "stop", "pacemaker"], timeout=STOP_WAIT_SECONDS)
            else:  # a request: resources move away first, then the daemons end
                node.run(["pacemakerd", "--shutdown"], timeout=60)
                _wait_stopped(node, "pacemaker")
        if running["corosync"]:
            if systemd_running():
                node.run(["systemctl", "stop", "corosync"], timeout=120)
            else:
                node.run(["corosync-cfgtool", "-H"], timeout=60)
                _wait_stopped(node, "corosync")
        AtomicWriter(node).remove(COROSYNC_CONF)


def _wait_stopped(node: Node, daemon: str) -> None:
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while daemons_running(node)[daemon]:
        if time.monotonic() > deadline:
            raise ApplyError(f"{daemon} did not stop within {STOP_WAIT_SECONDS:.0f}s on {node.name}")
        time.sleep(0.3)


def _fingerprint(node: Node) -> tuple:
    """What the Cluster watch compares: our files' stat and whether the daemons run."""
    stats = []
    for path in (COROSYNC_CONF, AUTHKEY):
        try:
            st = path.stat()
            stats.append((st.st_mtime_ns, st.st_size, st.st_mode, st.st_ino))
        except FileNotFoundError:
            stats.append(None)
    return tuple(stats), tuple(sorted(daemons_running(node).items()))


def corosync_check(node: Node, conf: Path) -> None:
    """`corosync -t -c FILE`: Corosync's own parser and checks (keys, nodelist, local
    address, authkey length). Raises ApplyError with its message."""
    try:
        node.run(["corosync", "-t", "-c", str(conf)], read_only=True, timeout=30)
    except CommandError as err:
        detail = [ln for ln in (err.stderr + err.stdout).splitlines() if "exiting with status" not in ln]
        raise ApplyError("corosync -t refused the generated corosync.conf: "
                         + " | ".join(d.strip() for d in detail[-3:])) from None


def _address_is_local(address: str) -> bool:
    """Whether this machine holds `address` (reads /proc, no command)."""
    target = ipaddress.IPv4Address(address)
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return True  # cannot tell: let corosync -t judge the real thing
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            try:
                if ipaddress.IPv4Address(lines[i - 1].split()[-1]) == target:
                    return True
            except ValueError:
                continue
    return False
