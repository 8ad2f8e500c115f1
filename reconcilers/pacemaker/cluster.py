"""Cluster: Corosync 3 (+ corosync-qdevice) and Pacemaker 2 on this node, from a Cluster manifest.

Per node (every member does this for itself): the authkey, corosync.conf (checked with
`corosync -t`, installed atomically), a reload when Corosync runs and a reload is what the
change needs (corosync.py says which changes need a restart: reconcile never restarts
Corosync, the plan says which restart a change waits for), corosync-qdevice when the
cluster has a quorum device, and Corosync, qdevice and Pacemaker started where they do
not run. The cluster-wide CIB (properties, ...) is the ClusterResource reconciler's
ClusterConfig object, written with the resources in one CIB update.

The object's state, in the shape `observe` and `desired` share::

    {"corosync": {...corosync.py settings...},
     "file": "generated",                       # corosync.conf says what we render
     "authkey": "<secret: in sync>",            # with crypto on; never the key
     "daemons": {"corosync": "running", "pacemaker": "running", "qdevice": "running"},
     "cryptoDigest": "published"}                # while Pacemaker runs: see below

A new authkey, cipher or hash (crypto turned on or off too) takes effect on a reload, and
a reload (`corosync-cfgtool -R`) makes EVERY node re-read its own corosync.conf and key:
reloaded while another node still has the old ones, the cluster splits in two (seen in the
lab: crypto turned off on one node of two, each half quorate with two_node). So each node
publishes a digest of the crypto settings and key it holds (the transient node attribute
`reconcile-corosync-crypto`), and a reload that changes them waits until every online
member shows the same: the last node to get the new ones reloads the whole cluster. A node
whose attribute is missing (Pacemaker restarted: transient attributes go) or stale while
another node published the same digest (and so may be waiting for it) shows
`cryptoDigest: not published` as drift, so its next run publishes it again and nobody waits
forever.

A node that never ran Pacemaker gets its first CIB seeded with the cluster properties
before pacemakerd starts (so a new cluster never runs a moment with stonith-enabled as
anything but what git says); a node joining a running cluster takes the cluster's CIB.
A node whose only cluster is the Debian packages' untouched one-node `debian` cluster has
it replaced without a manual step; any other cluster reconcile did not write is refused.

Under systemd, corosync and pacemaker also start at boot, as the packages install them: a
unit that does not is drift, said in its daemon's status (`pacemaker: running
(pacemaker.service is disabled …: not started at boot)`, base.boot_note; desired says plain
`running` on every machine), and enabled by apply; an operator's hold (masked, or disabled
although the package enables it) is reported and left, the Cluster pending (`Held`),
unless the manifest says `metadata.drift: enforce`.
"""
from __future__ import annotations

import base64
import copy
import grp
import hashlib
import ipaddress
import json
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

from reconcilers.base import (
    GENERATED_HEADER, NODE, ApplyError, AtomicWriter, Change, CommandError, Deferred, Desired, HealthReport, Node,
    PerObject, Refusal, boot_note, native_check, read_secret, starts_at_boot, unit_notes, wait_until,
)
from reconcilers.pacemaker import corosync, daemons, tools
from reconcilers.pacemaker import health as pcmk_health
from reconcilers.pacemaker.cluster_cib import cluster_config_state, section, write_properties

log = logging.getLogger("reconcile.cluster")

COROSYNC_CONF = daemons.COROSYNC_CONF
AUTHKEY = Path(corosync.AUTHKEY)
CIB_DIR = daemons.CIB_DIR
WATCH_SECONDS = 2.0
KEY_ATTRIBUTE = "reconcile-corosync-crypto"
KEY_WAIT_SECONDS = 10.0
PUBLISH_WAIT_SECONDS = 15.0
SECRET_IN_SYNC, SECRET_DIFFERS = "<secret: in sync>", "<secret: differs>"
PUBLISHED, NOT_PUBLISHED = "published", "not published"
NOT_OURS, EDITED, GENERATED, DEBIAN = "not written by reconcile", "edited", "generated", "the Debian default"


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


def key_digest(key: bytes, crypto: Any = None) -> str:
    """What a node publishes about the crypto settings and key it holds: 64 bits of a
    SHA-256 (a random 256-byte key cannot be recovered from it)."""
    if crypto is None:
        return hashlib.sha256(key).hexdigest()[:16]
    return hashlib.sha256(json.dumps(crypto, sort_keys=True).encode() + b"\0" + key).hexdigest()[:16]


class ClusterReconciler(PerObject):
    """Corosync (+ qdevice) and Pacemaker for the Cluster this node is a member of."""

    kind = "Cluster"
    # A node joins its cluster only once the files the cluster's resources read here are in
    # place: the DC may start a resource on a member the moment it joins (Pacemaker's galera
    # agent, started before this node's wsrep option file exists, fails for good with
    # "Unable to detect last known write sequence number").
    after = ("Galera",)
    units = tuple(f"{u}.service" for u in daemons.UNITS.values())

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
            self._enforce[name] = cluster.metadata.drift == "enforce"
            settings = corosync.corosync_settings(name, spec)
            self._spec[name], self._settings[name] = spec, settings
            state: dict[str, Any] = {"corosync": settings, "file": GENERATED}
            if settings["crypto"] != "none":
                state["authkey"] = SECRET_IN_SYNC
            state["daemons"] = {"corosync": "running", "pacemaker": "running"}
            if spec.quorum.device is not None:
                state["daemons"]["qdevice"] = "running"
            state["cryptoDigest"] = PUBLISHED
            out[name] = Desired(state)
        return {self.kind: out}

    def _render(self, name: str, keyfile: str = str(AUTHKEY)) -> str:
        spec = self._spec[name]
        return corosync.render(self._settings[name], spec.quorum.waitForAll is not None, keyfile)

    # --- observe -------------------------------------------------------------------------

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return {self.kind: {}}
        settings = corosync.observed_settings(corosync.parse(text))
        name = settings["clusterName"]
        state: dict[str, Any] = {"corosync": settings}
        if name in self._spec and (text == self._render(name) or settings == self._settings[name]):
            # the same settings written otherwise (by hand, by pcs: an import adopts it as it is)
            state["file"] = GENERATED
        elif GENERATED_HEADER in text:
            state["file"] = EDITED
        else:
            state["file"] = DEBIAN if daemons.untouched_default(node) else NOT_OURS
        spec = self._spec.get(name)
        if spec is not None and spec.authkey is not None:
            state.update(self._observe_authkey(spec, node))
        units = daemons.units(node)  # systemd: one `systemctl show` says active and enabled
        running = daemons.running(node, units)
        state["daemons"] = {d: ("running" if up else "stopped")
                            + (boot_note(units[d]) if units is not None and d in daemons.BOOT else "")
                            for d, up in running.items()
                            if d != "qdevice" or up or (spec is not None and spec.quorum.device is not None)}
        if running["pacemaker"]:
            state["cryptoDigest"] = self._published(settings, node)
        return {self.kind: {name: state}}

    @staticmethod
    def _published(settings: dict[str, Any], node: Node) -> str:
        """Whether a node waits for this one to publish its crypto digest: another node
        published the digest of the same settings and key, and this node's is missing or
        stale (its Pacemaker restarted since: transient attributes go with it). Nobody
        waiting (no attribute anywhere, as in a cluster made by hand): nothing to do."""
        try:
            key = AUTHKEY.read_bytes() if settings["crypto"] != "none" else b""
        except OSError:
            key = b""
        try:
            r = node.run(["attrd_updater", "--query", "--all", "--name", KEY_ATTRIBUTE], read_only=True,
                         check=False, timeout=15)
        except CommandError:
            return PUBLISHED  # attrd cannot be asked: nothing to repair from here
        values = dict(re.findall(r'host="([^"]*)" value="([^"]*)"', r.stdout))
        digest = key_digest(key, settings["crypto"])
        if values.get(node.name) == digest:
            return PUBLISHED
        waiting = any(v == digest for host, v in values.items() if host != node.name)
        return NOT_PUBLISHED if waiting else PUBLISHED

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
        """Daemons (corosync-qdevice too with a quorum device), DC, quorum and members
        online, from one crm_mon: the Cluster object's health and the node's "pacemaker"
        facet."""
        out = {}
        for name, spec in self._spec.items():
            if name not in desired.get(self.kind, {}):
                continue
            running = daemons.running(node)
            if spec.quorum.device is None:
                running.pop("qdevice", None)
            snap = pcmk_health.read(node) if all(running.values()) else "daemons not running"
            status = snap.status if isinstance(snap, pcmk_health.Snapshot) else None
            out[name] = pcmk_health.cluster_health(status, [n.name for n in spec.nodes], running,
                                                   snap if isinstance(snap, str) else "")
        report: HealthReport = {self.kind: out}
        if out:
            report[NODE] = {"pacemaker": next(iter(out.values()))}
        return report

    # --- validate and explain (read-only) ------------------------------------------------

    def validate(self, node: Node) -> list[Refusal | str]:
        problems: list[Refusal | str] = []
        local = _local_addresses()
        for name in self._spec:
            text = self._render(name)
            # corosync -t depends on this machine only through which of this node's own
            # addresses it holds (_check_conf swaps the others for loopback): a VIP coming
            # or going, a container's address, is not a new check
            held = [f"{a}={a in local}" for n in self._settings[name]["nodes"] if n["name"] == node.name
                    for a in n["addresses"]]
            found = native_check(node, "corosync", text, lambda: self._check_conf(name, node), context=",".join(held))
            problems += [Refusal(f"Cluster {name}: {p}", (("Cluster", name),)) for p in found]
        return problems

    def _check_conf(self, name: str, node: Node) -> list[str]:
        """`corosync -t` on the rendered corosync.conf in a temp folder (with a temp key of
        the right length: corosync -t checks its size, not its content). When this machine
        does not hold the node's addresses (a tree checked for another machine, in CI) they
        are swapped for loopback so the rest is still checked by Corosync."""
        settings = self._settings[name]
        tmpdir = tempfile.mkdtemp(prefix="reconcile-corosync-")
        try:
            keyfile = os.path.join(tmpdir, "authkey")
            if settings["crypto"] != "none":
                fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(256))
            check = copy.deepcopy(settings)
            local = _local_addresses()
            for n in check["nodes"]:
                if n["name"] == node.name:
                    n["addresses"] = [a if a in local else ("::1" if ":" in a else "127.0.0.1")
                                      for a in n["addresses"]]
            extra = check.setdefault("extra", {})
            # corosync -t logs to the logfile the config names: the real one stays untouched
            extra["logging"] = {**extra.get("logging", corosync.DEFAULT_LOGGING), "logfile": f"{tmpdir}/corosync.log"}
            text = corosync.render(check, self._spec[name].quorum.waitForAll is not None, keyfile)
            conf = os.path.join(tmpdir, "corosync.conf")
            with open(conf, "w") as f:
                f.write(text)
            corosync_check(node, Path(conf))
        except ApplyError as err:
            return [str(err)]
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return []

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            return ["stops Pacemaker (its resources move to other nodes) and Corosync on this node, "
                    "and removes the generated corosync.conf"]
        notes = []
        observed = change.observed or {}
        if change.action == "create" and COROSYNC_CONF.exists() and daemons.untouched_default(node):
            observed = {**observed, "file": DEBIAN}  # the node runs its packages' cluster, under another name
        if observed.get("file") == DEBIAN:
            notes.append("replaces the untouched one-node cluster the Debian packages started (no resources): "
                         "stops it and puts its CIB aside in /var/lib/pacemaker/cib.debian-default")
        elif observed.get("file") == NOT_OURS or (change.action == "create" and COROSYNC_CONF.exists()):
            notes.append(f"replaces {COROSYNC_CONF}, which reconcile did not write")
        if not all(starts_at_boot(v) for v in (observed.get("daemons") or {}).values()):
            notes += unit_notes(node, [f"{d}.service" for d in daemons.BOOT], self._enforce.get(change.name, False))
        running = str((observed.get("daemons") or {}).get("corosync")).startswith("running")
        before, after = observed.get("corosync") or {}, (change.desired or {}).get("corosync") or {}
        if before:
            needs = corosync.needs(before, after, observed.get("authkey") == SECRET_DIFFERS)
            notes += corosync.describe_needs(needs, running)
        return notes

    # --- apply ---------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        if change.action == "delete":
            self._delete(change.name, node)
            return
        name = change.name
        spec = self._spec[name]
        settings = self._settings[name]
        enforce = self._enforce.get(name, False)
        now = daemons.running(node)
        before = self._refuse_foreign(name, now, node)
        if before is None:
            now = daemons.running(node)
        writer = AtomicWriter(node)
        key_changed = False
        key = b""
        if settings["crypto"] != "none":
            key = read_authkey(spec.authkey, node)
            key_changed = writer.write(AUTHKEY, key, mode=0o400)
        conf_changed = writer.write(COROSYNC_CONF, self._render(name), mode=0o644,
                                    validate=lambda tmp: corosync_check(node, tmp))
        crypto_digest = key_digest(key, settings["crypto"])
        if now["corosync"]:
            needs = corosync.needs(before or settings, settings, key_changed)
            if (conf_changed or key_changed) and (set(needs) & {corosync.RELOAD, corosync.QDEVICE} or key_changed):
                crypto = key_changed or (before or settings).get("crypto") != settings["crypto"]
                self._reload(name, node, crypto_digest if crypto else "", needs)
            for kind in (corosync.ROLLING, corosync.WHOLE):
                if needs.get(kind):
                    log.warning("Cluster %s: %s wait(s) for a %s of Corosync; reconcile does not restart it",
                                name, ", ".join(needs[kind]), kind)
        else:
            daemons.start_corosync(node, enforce)
        if spec.quorum.device is not None and not daemons.running(node)["qdevice"]:
            daemons.start_qdevice(node)
        elif spec.quorum.device is None and now.get("qdevice"):
            daemons.stop_qdevice(node)
        started = False
        if not daemons.running(node)["pacemaker"]:
            self._seed_cib(spec, node)
            daemons.start_pacemaker(node, enforce)
            started = True
        # a Pacemaker just started takes a moment to run its attrd
        if not self._publish_key(crypto_digest, node) and started:
            wait_until(lambda: self._publish_key(crypto_digest, node), PUBLISH_WAIT_SECONDS, interval=0.5)
        daemons.boot(node, enforce)  # running, but not started at boot: enabled, unless an operator's hold

    def _reload(self, name: str, node: Node, digest: str, needs: dict[str, list[str]]) -> None:
        """corosync-cfgtool -R (every node re-reads its file), after every online member
        holds the same crypto settings and authkey when they change (`digest`); qdevice
        restarted when it changed."""
        if digest:
            self._publish_key(digest, node)
            waiting = wait_until(lambda: not self._key_laggards(digest, node), KEY_WAIT_SECONDS, interval=0.5)
            laggards = self._key_laggards(digest, node)
            if not waiting and laggards:
                raise Deferred(f"corosync.conf and the crypto settings (or authkey) are written here; the reload "
                               f"waits until every node holds the same (not yet: {', '.join(laggards)}): the last "
                               "node to get them reloads the whole cluster")
        node.run(["corosync-cfgtool", "-R"], timeout=30)
        if needs.get(corosync.QDEVICE) and daemons.running(node)["qdevice"]:
            daemons.stop_qdevice(node)

    def _publish_key(self, digest: str, node: Node) -> bool:
        try:
            node.run(["attrd_updater", "-n", KEY_ATTRIBUTE, "-U", digest], timeout=15)
        except CommandError:
            return False  # Pacemaker does not run (yet): observe shows it unpublished, a later run publishes
        return True

    @staticmethod
    def _key_laggards(digest: str, node: Node) -> list[str]:
        """Online members whose published crypto digest is not ours."""
        try:
            status = tools.cluster_status(node)
            cib = tools.query_cib(node, scope="status")
        except tools.CibUnavailable:
            return []  # no Pacemaker: nothing to wait on (the Cluster is starting)
        wrapper = ET.Element("cib")
        wrapper.append(cib)
        return [n for n in status.online if tools.node_attributes(wrapper, n).get(KEY_ATTRIBUTE) != digest]

    def _refuse_foreign(self, name: str, now: dict[str, bool], node: Node) -> dict[str, Any] | None:
        """Never take over a running cluster that reconcile did not set up, except the
        distribution's untouched default (replaced: returns None). Returns the settings the
        node runs now."""
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return None
        current = corosync.observed_settings(corosync.parse(text))
        if GENERATED_HEADER in text or not now["corosync"]:
            return current
        if daemons.untouched_default(node):
            log.warning("replacing the Debian packages' default one-node cluster %r on %s", current["clusterName"],
                        node.name)
            daemons.retire_default(node, now)
            return None
        if current["clusterName"] != name:
            raise ApplyError(f"Corosync runs cluster {current['clusterName']!r} from a {COROSYNC_CONF} that "
                             f"reconcile did not write; refusing to replace it with cluster {name!r}. Stop that "
                             f"cluster first, or name the Cluster manifest {current['clusterName']!r} to adopt it "
                             "(`reconcile import pacemaker --live` writes its manifests).")
        return current

    def _seed_cib(self, spec: Any, node: Node) -> None:
        """First CIB of a node that never ran Pacemaker: the cluster properties, version 0.1.0."""
        if (CIB_DIR / "cib.xml").exists() or any(CIB_DIR.glob("cib-*.raw")):
            return
        seed = tools.empty_cib(node, {})
        seed.attrib.pop("have-quorum", None)
        configuration = seed.find("configuration")
        assert configuration is not None
        write_properties(section(configuration, "crm_config"), cluster_config_state(spec)["properties"], None)
        try:
            owner = (pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid)
        except KeyError:
            return  # not a Pacemaker install we know: let Pacemaker create its own CIB
        text = ET.tostring(seed, encoding="unicode") + "\n"

        def check(tmp: Path) -> None:
            errors = tools.verify(node, tools.parse_xml(tmp.read_text()), missing_stonith_ok=True)
            if errors:
                raise ApplyError("the first CIB for this node does not verify: " + "; ".join(errors[:3]))

        AtomicWriter(node).write(CIB_DIR / "cib.xml", text, mode=0o600, owner=owner, validate=check)

    def _delete(self, name: str, node: Node) -> None:
        """The Cluster left git: leave it, gracefully, if this node still runs it from our file."""
        try:
            text = COROSYNC_CONF.read_text()
        except FileNotFoundError:
            return
        if GENERATED_HEADER not in text or corosync.observed_settings(corosync.parse(text))["clusterName"] != name:
            return  # not ours, or already rewritten for another cluster
        daemons.stop_all(node, daemons.running(node))
        AtomicWriter(node).remove(COROSYNC_CONF)

    # --- render and watch ----------------------------------------------------------------

    # --- rollouts ------------------------------------------------------------------------

    @staticmethod
    def coordinator(tree: Any, node: Node) -> Any:
        """The rollout coordinator (rollout.py) when this node's Cluster has a rollout policy."""
        from reconcilers.pacemaker.rollout import coordinator_for

        return coordinator_for(tree, node)

    @staticmethod
    def rollout_view(node: Node) -> dict[str, Any] | None:
        """The rollout's turn and every node's published facts (`reconcile status --cluster`);
        None when Pacemaker does not answer here."""
        from reconcilers.pacemaker.rollout import parse_view

        try:
            return parse_view(tools.query_cib(node))
        except tools.CibUnavailable:
            return None

    def drain(self, node: Node, force: bool = False, timeout: float | None = None,
              grace: float | None = None) -> str | None:
        """Transient standby: Pacemaker moves this node's resources (a Pacemaker VIP) away,
        stopping each as its agent does (`grace` is the keepalived gate's, not used here)."""
        from reconcilers.pacemaker.rollout import standby

        return standby(node, True, force, timeout or 60.0)

    def serving(self, node: Node) -> list[str] | None:
        """The resources Pacemaker runs (or is starting) here: what a standby would move."""
        from reconcilers.pacemaker.rollout import serving

        found = serving(node)
        return None if found is None else [f"Pacemaker runs {r}" for r in found]

    def undrain(self, node: Node) -> str | None:
        from reconcilers.pacemaker.rollout import standby

        return standby(node, False)

    def render(self, node: Node) -> dict[str, str]:
        """The corosync.conf this node gets (`reconcile render`); the authkey is a secret."""
        return {str(COROSYNC_CONF): self._render(name) for name in self._spec}

    def watch(self, node: Node) -> Iterator[str]:
        """Yield when corosync.conf or the authkey change, or a daemon stops or starts
        (checked every few seconds: a stat and a look at the pid files)."""
        last = _fingerprint(node)
        while True:
            time.sleep(WATCH_SECONDS)
            current = _fingerprint(node)
            if current != last:
                yield "corosync.conf, the authkey or the Corosync/Pacemaker daemons changed"
            last = current


def _fingerprint(node: Node) -> tuple:
    """What the Cluster watch compares: our files' stat and whether the daemons run."""
    stats = []
    for path in (COROSYNC_CONF, AUTHKEY):
        try:
            st = path.stat()
            stats.append((st.st_mtime_ns, st.st_size, st.st_mode, st.st_ino))
        except FileNotFoundError:
            stats.append(None)
    return tuple(stats), tuple(sorted(daemons.running(node).items()))


def corosync_check(node: Node, conf: Path) -> None:
    """`corosync -t -c FILE`: Corosync's own parser and checks (keys, nodelist, local
    address, authkey length). Raises ApplyError with its message."""
    try:
        node.run(["corosync", "-t", "-c", str(conf)], read_only=True, timeout=30)
    except CommandError as err:
        detail = [ln for ln in (err.stderr + err.stdout).splitlines() if "exiting with status" not in ln]
        raise ApplyError("corosync -t refused the generated corosync.conf: "
                         + " | ".join(d.strip() for d in detail[-3:])) from None


def _local_addresses() -> set[str]:
    """The addresses this machine holds (read from /proc, no command)."""
    out: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            out.add(lines[i - 1].split()[-1])
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            out.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    return out


def _address_is_local(address: str) -> bool:
    """Whether this machine holds `address`."""
    return str(ipaddress.ip_address(address)) in _local_addresses()
