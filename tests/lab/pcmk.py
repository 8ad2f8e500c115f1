"""Helpers the Pacemaker lab tests share: running reconcile in a node, reading the cluster,
a second network (knet link 1), a corosync-qnetd server and IPMI BMCs for fencing.

The quorum server and the BMCs are real daemons from Debian's packages: corosync-qnetd,
and OpenIPMI's `ipmi_sim` (a BMC simulator speaking IPMI over LAN, checking user and
password as a BMC does); fence_ipmilan talks to it through ipmitool. They run in a lab
node that is not a cluster member, and end with the lab.
"""
from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from controller.lab import Lab
from reconcilers.pacemaker.tools import parse_crm_mon


def reconcile(lab: Lab, node: str, root: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    argv = ["reconcile", *args, "--repo", str(root), "-o", "json"]
    r = lab.exec(node, argv, check=False, timeout=240, env=env)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"{node}: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}") from None


def apply_all(lab: Lab, nodes: list[str], root: Path, *args: str) -> dict[str, dict]:
    """`reconcile apply` on every node at once, as their agents would; every run must pass."""
    procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(root), "-o", "json", *args], stdout=-1,
                          stderr=-1, text=True) for n in nodes}
    out = {}
    for node, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{node}: apply exited {proc.returncode}\n{stdout}\n{stderr}"
        out[node] = json.loads(stdout)
    return out


def statuses(record: dict) -> dict[str, str]:
    return {f"{o['kind']}/{o['name']}": o["status"] for o in record["objects"]}


def status(lab: Lab, node: str):
    return parse_crm_mon(lab.exec(node, ["crm_mon", "-1", "--output-as=xml"]).stdout)


def dc(lab: Lab, nodes: list[str]) -> str:
    for node in nodes:
        try:
            found = status(lab, node).dc
        except Exception:
            continue
        if found:
            return found
    raise AssertionError("no DC")


def epoch(lab: Lab, node: str) -> tuple[int, int]:
    cib = ET.fromstring(lab.exec(node, ["cibadmin", "--query"]).stdout)
    return int(cib.get("admin_epoch", 0)), int(cib.get("epoch", 0))


def roles(lab: Lab, node: str, resource: str) -> dict[str, str]:
    """Node → role of each active instance of `resource` (clone instances merged)."""
    mon = ET.fromstring(lab.exec(node, ["crm_mon", "-1", "--output-as=xml"]).stdout)
    out = {}
    for r in mon.iter("resource"):
        if r.get("id", "").split(":")[0] == resource and r.get("active") == "true":
            for n in r.findall("node"):
                out[n.get("name")] = r.get("role")
    return out


def wait_for(what, timeout: float, step: float = 0.3, message: str = "", show=None):
    """Wait until `what()` is true; on a timeout fail with `message` and what `show()` says."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError((message or f"timed out after {timeout}s") + (f"\n{show()}" if show else ""))
        time.sleep(step)


def crm_mon(lab: Lab, node: str) -> str:
    """crm_mon's text, for a failing test's message."""
    return lab.exec(node, ["crm_mon", "-1", "-A", "-f", "-r"], check=False).stdout


def settled(lab: Lab, node: str, timeout: float = 90) -> None:
    lab.exec(node, ["crm_resource", "--wait", f"--timeout={int(timeout)}s"], timeout=timeout + 10)


def add_link(lab: Lab, nodes: list[str], v6: str = "2001:db8:1::", v4: str = "198.51.100.") -> dict[str, list[str]]:
    """A second network: bridge br1 in the lab's switch namespace, eth1 in each node with an
    IPv6 (2001:db8:1::1N) and an IPv4 (198.51.100.1N) address. Gone with the lab's namespaces."""
    sw = lab.switch
    _ip(sw, "link add br1 type bridge mcast_snooping 0", "link set br1 up")
    out = {}
    for node in nodes:
        n = node.removeprefix("lb")
        peer = f"{node}-l1"
        _ip(sw, f"link add {peer} type veth peer name eth1 netns {lab.netns(node)}", f"link set {peer} master br1",
            f"link set {peer} up")
        _ip(lab.netns(node), f"addr add {v6}1{n}/64 dev eth1 nodad", f"addr add {v4}1{n}/24 dev eth1",
            "link set eth1 up")
        out[node] = [f"{v6}1{n}", f"{v4}1{n}"]
    return out


def _ip(netns: str, *commands: str) -> None:
    subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(commands) + "\n", text=True, check=True)


def start_qnetd(lab: Lab, node: str) -> None:
    """corosync-qnetd in the foreground (no TLS: no NSS certificates in the lab)."""
    lab.popen(node, ["corosync-qnetd", "-f", "-s", "off", "-l", lab.address(node)], stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL)
    wait_for(lambda: "LISTEN" in lab.exec(node, ["ss", "-tlnH", "sport", "= :5403"]).stdout or
             lab.exec(node, ["ss", "-tlnH", "sport", "= :5403"]).stdout.strip(), 10,
             message="corosync-qnetd did not listen")


BMC_CONF = """\
name "{name}"
set_working_mc 0x20
  startlan 1
    addr {address} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcd{tag:02x}
  endlan
  startcmd "sleep 1000000"
  startnow true
  poweroff_wait 1
  kill_wait 1
  user 1 true  ""      ""          user  10 none md2 md5 straight
  user 2 true  "admin" "{password}" admin 10 none md2 md5 straight
"""
BMC_EMU = "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n" \
          "sel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"


def start_bmc(lab: Lab, node: str, name: str, port: int, password: str):
    """An IPMI BMC simulator listening on the node's address at UDP `port`, accepting
    user admin with `password`. Returns its process (terminate() to change the password)."""
    folder = lab.shared / "bmc" / name
    (folder / "state").mkdir(parents=True, exist_ok=True)
    (folder / "lan.conf").write_text(BMC_CONF.format(name=name, address=lab.address(node), port=port, tag=port % 256,
                                                     password=password))
    (folder / "lan.emu").write_text(BMC_EMU)
    proc = lab.popen(node, ["ipmi_sim", "-c", str(folder / "lan.conf"), "-f", str(folder / "lan.emu"), "-s",
                            str(folder / "state"), "-n"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: lab.exec(node, ["ss", "-ulnH", "sport", f"= :{port}"]).stdout.strip(), 10,
             message=f"ipmi_sim {name} did not listen")
    return proc
