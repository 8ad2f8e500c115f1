"""Pacemaker's command-line tools, for the Cluster and ClusterResource reconcilers.

The CIB is one document for the whole cluster, so it is handled with more care than a
file on one node:

- Read: `cibadmin --query` (one call per observe), `crm_mon --output-as=xml` for the DC
  and the daemons' state. Parsed here into plain Python values.
- One writer: only Pacemaker's current DC writes (`wait_for_dc`). Another node wakes
  the DC's agent (`wake`) and waits, bounded, for the change to appear: then it is
  deferred (assured), otherwise pending. No election of our own: Pacemaker elected the DC.
- One verified change: the candidate CIB is the live one edited in Python, checked with
  `crm_verify --xml-file`, then pushed as the patch `crm_diff --cib` computes, with
  `cibadmin --patch`. The patch names the CIB version it was computed against, so a CIB
  that changed under us is refused (and retried from a fresh query), never overwritten.
- Preview: `crm_simulate --simulate` on the candidate (a temp file) says what Pacemaker
  would then do; `parse_transition` turns its `<actions>` (the "Transition Summary") into
  lines such as "db: move lb1 → lb2".
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from reconcilers.base import ApplyError, CommandError, Node

DC_WAIT_SECONDS = 60.0
"""How long an apply waits for a DC while the cluster forms (dc-deadtime is 20 s by default)."""


class CibUnavailable(Exception):
    """Pacemaker does not answer on this node (not running yet, or starting)."""


# --- reading -----------------------------------------------------------------------------


@dataclass
class ClusterStatus:
    """What `crm_mon --output-as=xml` says, reduced to what the reconcilers need."""

    dc: str | None
    quorate: bool
    pacemakerd: str  # running | starting | shutting down | … ("" when not reported)
    online: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    active: dict[str, list[str]] = field(default_factory=dict)  # resource (clone instances merged) → nodes


def parse_crm_mon(text: str) -> ClusterStatus:
    root = ET.fromstring(text)
    dc_el = root.find("summary/current_dc")
    dc = None
    quorate = False
    if dc_el is not None and dc_el.get("present") == "true":
        dc = dc_el.get("name")
        quorate = dc_el.get("with_quorum") == "true"
    pcmkd = root.find("pacemakerd")
    nodes = root.findall("nodes/node")
    active: dict[str, list[str]] = {}
    for rsc in root.iterfind("resources//resource"):
        if rsc.get("active") == "true":
            where = active.setdefault(rsc.get("id", "").split(":", 1)[0], [])
            where += [n.get("name", "") for n in rsc.findall("node") if n.get("name") not in where]
    return ClusterStatus(
        dc=dc,
        quorate=quorate,
        pacemakerd=(pcmkd.get("state", "") if pcmkd is not None else ""),
        online=[n.get("name", "") for n in nodes if n.get("online") == "true"],
        nodes=[n.get("name", "") for n in nodes],
        active=active,
    )


def cluster_status(node: Node) -> ClusterStatus:
    """The cluster as this node's Pacemaker sees it. Raises CibUnavailable when it does not answer."""
    try:
        result = node.run(["crm_mon", "-1", "--output-as=xml"], read_only=True, timeout=15, check=False)
    except CommandError as err:  # timed out
        raise CibUnavailable(str(err)) from None
    if result.rc != 0 or "<pacemaker-result" not in result.stdout:
        raise CibUnavailable((result.stderr or result.stdout).strip().splitlines()[-1:] or "crm_mon failed")
    try:
        return parse_crm_mon(result.stdout)
    except ET.ParseError as err:
        raise CibUnavailable(f"crm_mon printed XML that does not parse: {err}") from None


def query_cib(node: Node, scope: str | None = None, local: bool = False) -> ET.Element:
    """The CIB (or one section of it) as an element tree. Raises CibUnavailable."""
    argv = ["cibadmin", "--query"]
    if scope:
        argv += ["--scope", scope]
    if local:
        argv.append("--local")  # this node's copy: answers before a DC exists
    try:
        result = node.run(argv, read_only=True, timeout=15, check=False)
    except CommandError as err:
        raise CibUnavailable(str(err)) from None
    if result.rc != 0:
        detail = (result.stderr or result.stdout).strip()
        raise CibUnavailable(detail.splitlines()[-1] if detail else f"cibadmin exited {result.rc}")
    return parse_xml(result.stdout)


SAVED_CIB = Path("/var/lib/pacemaker/cib/cib.xml")


def saved_configuration(cluster: str, path: Path | None = None) -> ET.Element | None:
    """The configuration of the CIB this node saved when its Pacemaker last ran, read while
    Pacemaker is stopped (what it starts with, until the DC sends a newer one): a stopped
    Pacemaker is not an empty cluster. None when there is none or it is another
    cluster's (Debian's packaged `debian` one)."""
    try:
        cib = parse_xml((path or SAVED_CIB).read_text())
    except (OSError, UnicodeDecodeError, ET.ParseError):
        return None
    names = [nv.get("value") for nv in cib.iterfind("configuration/crm_config//nvpair") if nv.get("name") == "cluster-name"]
    if any(n != cluster for n in names):
        return None
    return cib.find("configuration")


def parse_xml(text: str) -> ET.Element:
    """Parse CIB XML with the layout whitespace removed, so that comparing and diffing
    elements compares content only."""
    root = ET.fromstring(text)
    strip_blanks(root)
    return root


def strip_blanks(el: ET.Element) -> None:
    for e in el.iter():
        if e.text is not None and not e.text.strip():
            e.text = None
        if e.tail is not None and not e.tail.strip():
            e.tail = None


def nvpairs(el: ET.Element | None, tag: str) -> dict[str, str]:
    """name → value of every nvpair in `el`'s child sets named `tag` (instance_attributes, …)."""
    out: dict[str, str] = {}
    if el is None:
        return out
    for nvset in el.findall(tag):
        for nv in nvset.findall("nvpair"):
            if nv.get("name") is not None:
                out[nv.get("name", "")] = nv.get("value", "")
    return out


# --- Pacemaker-placed LXC containers ----------------------------------------------------

CONTAINER_ATTRIBUTE_VALUE = "1"


def container_attribute(name: str) -> str:
    """The transient node attribute that says "container NAME is defined on this node".

    The Container reconciler sets it (`attrd_updater`, through the node's own attrd) once
    it has created the container there, and clears it before it destroys it; the
    container's lxc primitive has a location rule that keeps it off every node without it.
    So Pacemaker never starts a container on a node that does not have it (which would
    fail with "not installed" and ban the resource from that node), whatever order the
    agents of the nodes run in. Transient: it goes when Pacemaker restarts on the node,
    and the node's agent sets it again on its next run.
    """
    return f"reconcile-container-{name}"


def node_attributes(cib: ET.Element, node_name: str) -> dict[str, str]:
    """The transient attributes of one node from the CIB's status section."""
    out: dict[str, str] = {}
    for state in cib.iterfind("status/node_state"):
        if state.get("uname") == node_name:
            out.update(nvpairs(state.find("transient_attributes"), "instance_attributes"))
    return out


def lxc_primitives(cib: ET.Element) -> dict[str, str]:
    """Container name → id of the ocf:heartbeat:lxc primitive that runs it, for every such
    primitive in the configuration (ours or made by hand, at any depth)."""
    out: dict[str, str] = {}
    for el in cib.iterfind("configuration/resources//primitive"):
        if (el.get("class"), el.get("provider"), el.get("type")) == ("ocf", "heartbeat", "lxc"):
            container = nvpairs(el, "instance_attributes").get("container")
            if container:
                out.setdefault(container, el.get("id", ""))
    return out


# --- one writer --------------------------------------------------------------------------


def wait_for_dc(node: Node, timeout: float = DC_WAIT_SECONDS) -> str:
    """The current DC's name, waiting (bounded) while Pacemaker starts and elects one."""
    deadline = time.monotonic() + timeout
    why = "no answer from Pacemaker"
    while True:
        try:
            status = cluster_status(node)
            if status.dc:
                return status.dc
            why = "the cluster has no DC yet (Pacemaker is electing one)"
        except CibUnavailable as err:
            why = f"Pacemaker does not answer on {node.name}: {err}"
        if time.monotonic() >= deadline:
            raise ApplyError(f"{why}; waited {timeout:.0f}s. Is Pacemaker running on the cluster's nodes "
                             "(the Cluster manifest starts it)?")
        time.sleep(0.5)


# A node that owes the DC a CIB change asks the DC's agent to run now: a transient node
# attribute of the DC (status section, gone at its reboot) that its watch reads.
WAKE_ATTRIBUTE = "reconcile-wake"


def wake(node: Node, dc: str) -> str:
    """Ask the agent of `dc` to run now (its ClusterResource watch sees the attribute
    change); the token written, which names the asking node."""
    token = f"{node.name}@{time.time():.3f}"
    node.run(["attrd_updater", "-n", WAKE_ATTRIBUTE, "-N", dc, "-U", token], timeout=15)
    return token


def wake_token(cib: ET.Element, node_name: str) -> str | None:
    """The wake token `node_name` was last given, in a whole CIB (its status section)."""
    for state in cib.iterfind("status/node_state"):
        if state.get("uname") == node_name:
            for nv in state.iterfind("transient_attributes/instance_attributes/nvpair"):
                if nv.get("name") == WAKE_ATTRIBUTE:
                    return nv.get("value")
    return None



# --- one verified change -----------------------------------------------------------------


@contextmanager
def temp_xml(*docs: ET.Element) -> Iterator[list[Path]]:
    """Write each document to a private temp file; remove them afterwards."""
    paths: list[Path] = []
    try:
        for doc in docs:
            fd, name = tempfile.mkstemp(prefix="reconcile-cib-", suffix=".xml")
            with os.fdopen(fd, "wb") as f:
                f.write(ET.tostring(doc))
            paths.append(Path(name))
        yield paths
    finally:
        for p in paths:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


MISSING_STONITH = ("no STONITH resources have been defined", "disable STONITH with the stonith-enabled option",
                   "Clusters with shared data need STONITH")


@dataclass(frozen=True)
class VerifyError:
    """One error crm_verify reported: the message, and the ids of the element it is about
    (innermost first) when it named a line of the file it checked."""

    message: str
    ids: tuple[str, ...] = ()


def numbered_xml(doc: ET.Element) -> tuple[bytes, dict[int, tuple[str, ...]]]:
    """`doc` written one element per line, and for each line the ids of the element that
    starts there and of its ancestors (innermost first): crm_verify's schema errors name a
    line, this says which object it is."""
    doc = copy.deepcopy(doc)
    ET.indent(doc)
    data = ET.tostring(doc)
    lines: dict[int, tuple[str, ...]] = {}
    stack: list[str] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        stack.append(attrs.get("id", ""))
        lines[parser.CurrentLineNumber] = tuple(i for i in reversed(stack) if i)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    parser.Parse(data, True)
    return data, lines


def verify(node: Node, cib: ET.Element, *, missing_stonith_ok: bool = False) -> list[str]:
    """`crm_verify -V` on a candidate CIB: the errors it reports (empty when valid)."""
    return [e.message for e in verify_details(node, cib, missing_stonith_ok=missing_stonith_ok)]


def verify_details(node: Node, cib: ET.Element, *, missing_stonith_ok: bool = False) -> list[VerifyError]:
    """`crm_verify -V` on a candidate CIB, each error with the ids it is about.

    `missing_stonith_ok`: stonith-enabled without a fencing device is not an error here
    (a preview of a cluster whose device comes in a later change)."""
    data, lines = numbered_xml(cib)
    fd, name = tempfile.mkstemp(prefix="reconcile-cib-", suffix=".xml")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        result = node.run(["crm_verify", "--xml-file", name, "-V"], read_only=True, check=False, timeout=30)
    finally:
        os.unlink(name)
    errors = []
    for message in parse_verify(result.rc, result.stderr + result.stdout, name, missing_stonith_ok):
        m = re.match(r"^(\d+): (.*)$", message)
        if m:
            errors.append(VerifyError(m.group(2), lines.get(int(m.group(1)), ())))
        else:
            quoted = tuple(dict.fromkeys(re.findall(r"'([A-Za-z_][A-Za-z0-9_.:-]*)'", message)))
            errors.append(VerifyError(message, quoted))
    return errors


def parse_verify(rc: int, text: str, path: str = "", missing_stonith_ok: bool = False) -> list[str]:
    """The errors in crm_verify's output. It exits 78 on warnings alone too (an "active
    orphan" right after a resource leaves the configuration, which is how a resource is
    removed and Pacemaker then stops it): only errors count. A schema error keeps the line
    it names (`LINE: message`) and loses the temp file's name."""
    if rc == 0 or ("Warnings found during check" in text and "Errors found during check" not in text):
        return []
    errors, excused = [], False
    for line in (ln.strip() for ln in text.splitlines()):
        if "validity error" in line:
            # "/tmp/reconcile-cib-x.xml:6: element rsc_colocation: validity error : …"
            if path and line.startswith(path + ":"):
                errors.append(line[len(path) + 1:])
            else:
                errors.append(line)
        elif re.match(r"^\(\w+\)\s+error: ", line):
            message = line.split("error: ", 1)[1]
            if message == "CIB did not pass schema validation":
                continue  # the validity errors above say why
            if missing_stonith_ok and any(m in message for m in MISSING_STONITH):
                excused = True
                continue
            errors.append(message)
    if not errors and excused:
        return []
    return list(dict.fromkeys(errors)) or [f"crm_verify exited {rc}: {text.strip()[-300:]}"]


def same_configuration(a: ET.Element, b: ET.Element) -> bool:
    """Whether two CIBs have the same configuration section (status and versions aside)."""
    ca, cb = a.find("configuration"), b.find("configuration")
    if ca is None or cb is None:
        return ca is cb
    return ET.tostring(ca) == ET.tostring(cb)


def bump_epoch(cib: ET.Element, live: ET.Element) -> None:
    """A patch must lead to a newer CIB than the one it was computed against, or
    `cibadmin --patch` refuses it as older."""
    cib.set("epoch", str(int(live.get("epoch", "0")) + 1))
    for attr in ("admin_epoch", "num_updates"):
        if live.get(attr) is not None:
            cib.set(attr, live.get(attr, "0"))


def patch(node: Node, live: ET.Element, candidate: ET.Element) -> bool:
    """Apply `candidate` (checked by the caller) as one patch against `live`. False if the
    configurations do not differ. Raises CommandError when Pacemaker refuses the patch (for
    instance because the CIB changed since `live` was read: the caller queries again)."""
    if same_configuration(live, candidate):
        return False
    candidate = copy.deepcopy(candidate)
    bump_epoch(candidate, live)
    with temp_xml(live, candidate) as (live_path, cand_path):
        diff = node.run(["crm_diff", "--original", str(live_path), "--new", str(cand_path), "--cib"],
                        read_only=True, check=False, timeout=30)
        if diff.rc == 0:
            return False
        if diff.rc != 1 or "<diff" not in diff.stdout:
            raise ApplyError(f"crm_diff failed: {(diff.stderr or diff.stdout).strip()[-300:]}")
        fd, patch_name = tempfile.mkstemp(prefix="reconcile-cib-patch-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(diff.stdout)
            node.run(["cibadmin", "--patch", "--xml-file", patch_name], timeout=60)
        finally:
            os.unlink(patch_name)
    return True


# --- preview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One line of crm_simulate's transition summary."""

    resource: str
    action: str  # start | stop | move | restart | recover | promote | demote | migrate | reload | …
    node: str | None = None
    source: str | None = None
    dest: str | None = None
    reason: str | None = None
    blocked: bool = False

    @property
    def base_resource(self) -> str:
        """The resource without a clone instance suffix (ping:0 → ping)."""
        return self.resource.split(":", 1)[0]

    def describe(self) -> str:
        if self.source and self.dest:
            where = f"{self.source} → {self.dest}"
        else:
            where = f"on {self.node or self.source or self.dest or '?'}"
        text = f"{self.resource}: {self.action} {where}"
        extra = [self.reason] if self.reason else []
        if self.blocked:
            extra.append("blocked")
        return f"{text} ({', '.join(extra)})" if extra else text


def parse_transition(text: str) -> list[Action]:
    """The transition summary of `crm_simulate --simulate --output-as=xml`."""
    root = ET.fromstring(text)
    actions = root.find("actions")
    if actions is None:
        return []
    out = []
    for a in actions.findall("rsc_action"):
        out.append(Action(
            resource=a.get("resource", "?"),
            action=a.get("action", "?"),
            node=a.get("node"),
            source=a.get("source"),
            dest=a.get("dest"),
            reason=a.get("reason"),
            blocked=a.get("blocked") == "true",
        ))
    return out


def simulate(node: Node, cib: ET.Element, nodes_up: Sequence[str] = ()) -> list[Action]:
    """What Pacemaker would do with `cib`: crm_simulate on a temp copy (read-only).
    `nodes_up` brings nodes online in the simulation (a cluster that is still forming)."""
    argv_tail: list[str] = []
    for n in nodes_up:
        argv_tail += ["--node-up", n]
    shadow_dir = tempfile.mkdtemp(prefix="reconcile-shadow-")
    try:
        with temp_xml(cib) as (path,):
            # crm_simulate keeps a scratch copy in the shadow folder, by default Pacemaker's
            # own /var/lib/pacemaker/cib: a preview must not write there.
            result = node.run(["crm_simulate", "--xml-file", str(path), "--simulate", *argv_tail, "--output-as=xml"],
                              read_only=True, check=False, timeout=60, env={"CIB_shadow_dir": shadow_dir})
    finally:
        shutil.rmtree(shadow_dir, ignore_errors=True)
    if result.rc != 0 or "<pacemaker-result" not in result.stdout:
        raise ApplyError(f"crm_simulate failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return parse_transition(result.stdout)


def empty_cib(node: Node, nodes: dict[int, str]) -> ET.Element:
    """A CIB for a cluster that does not run yet: `cibadmin --empty` with the nodes filled
    in and quorum assumed, for crm_verify and crm_simulate."""
    result = node.run(["cibadmin", "--empty"], read_only=True, timeout=15)
    cib = parse_xml(result.stdout)
    cib.set("have-quorum", "1")
    nodes_el = cib.find("configuration/nodes")
    assert nodes_el is not None
    for node_id, name in sorted(nodes.items()):
        ET.SubElement(nodes_el, "node", {"id": str(node_id), "uname": name})
    return cib


# --- native checks -----------------------------------------------------------------------

_DAEMON_DIRS = ("/usr/lib/pacemaker", "/usr/libexec/pacemaker")
_DAEMONS_WITH_OPTIONS = ("pacemaker-schedulerd", "pacemaker-controld", "pacemaker-based")


def known_properties(node: Node) -> set[str] | None:
    """Every cluster property this Pacemaker knows, from its daemons' metadata; None when
    the daemons are not where Debian or RHEL put them."""
    names: set[str] = set()
    for folder in _DAEMON_DIRS:
        if not Path(folder, _DAEMONS_WITH_OPTIONS[0]).exists():
            continue
        for daemon in _DAEMONS_WITH_OPTIONS:
            result = node.run([f"{folder}/{daemon}", "metadata"], read_only=True, check=False, timeout=15)
            if result.rc != 0:
                continue
            try:
                meta = ET.fromstring(result.stdout)
            except ET.ParseError:
                continue
            names.update(p.get("name", "") for p in meta.iter("parameter"))
        return names or None
    return None


def agent_missing(node: Node, agent: str) -> str | None:
    """Why `agent` cannot be used on this node (None when its metadata loads)."""
    result = node.run(["crm_resource", "--show-metadata", agent], read_only=True, check=False, timeout=30)
    if result.rc == 0:
        return None
    detail = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    return detail[0] if detail else f"crm_resource exited {result.rc}"
