"""Containers as operators write them (issue 20), on real LXC 5 in one lab node: an
unprivileged busybox container whose root is not root on the node, a mount entry and an
environment (a secret by reference), a container made by hand with lxc-create, imported
and planned with nothing to do, and bad input that changes nothing.

One node serves the module; each test uses its own names, repository and state folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.lab import Lab, temporary_lab

pytestmark = pytest.mark.lab

NODE = "lb1"
UNPRIVILEGED = """\
apiVersion: reconcile/v1
kind: Container
metadata: {name: unpriv1}
spec:
  node: lb1
  template: busybox
  idmap:
    - {type: u, container: 0, host: 200000, count: 65536}
    - {type: g, container: 0, host: 200000, count: 65536}
  network: {type: bridge, bridge: uct0, address: 198.51.100.34/28, bridgeAddress: 198.51.100.33/28,
            gateway: 198.51.100.33}
  init: [/bin/sleep, "1000000"]
  files: {/etc/app.conf: "mode=production\\n"}
  fileModes: {/etc/app.conf: {mode: "0640", owner: 0, group: 33}}
"""
WITH_MOUNT = """\
apiVersion: reconcile/v1
kind: Container
metadata: {name: mnt1}
spec:
  node: lb1
  template: busybox
  mounts:
    - {source: SHARED/data, target: srv/data, options: [bind, ro, create=dir]}
  environment: {APP_MODE: production, APP_TOKEN: {file: SHARED/token}}
  init: [/bin/sleep, "1000000"]
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=1, prefix="co") as lab:
        yield lab


def run(lab: Lab, repo: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    r = lab.reconcile(NODE, *args, "--repo", str(repo), "--state-dir", str(repo) + "-state", "-o", "json", timeout=300)
    try:
        record = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"reconcile {args} rc={r.returncode}\n{r.stdout}\n{r.stderr}") from None
    return r.returncode, {o["name"]: o for o in record["objects"]}, r.stdout + r.stderr


def repo(lab: Lab, name: str, *texts: str) -> Path:
    path = lab.shared / name
    path.mkdir(exist_ok=True)
    for i, text in enumerate(texts):
        (path / f"{i}.yaml").write_text(text.replace("SHARED", str(lab.shared)))
    return path


def sh(lab: Lab, script: str, check: bool = True) -> str:
    return lab.exec(NODE, ["sh", "-c", script], check=check).stdout


def test_an_unprivileged_busybox_containers_root_is_not_root_on_the_node(lab):
    tree = repo(lab, "unpriv", UNPRIVILEGED)
    rc, objects, _ = run(lab, tree, "apply")
    assert rc == 0 and objects["unpriv1"]["status"] == "changed", objects
    pid = sh(lab, "lxc-info -n unpriv1 -p -H").strip()
    # root inside is 200000 on the node: the kernel's own map of its init
    assert sh(lab, f"cat /proc/{pid}/uid_map /proc/{pid}/gid_map").split() == ["0", "200000", "65536"] * 2
    assert sh(lab, f"stat -c %u /proc/{pid}").strip() == "200000"
    assert sh(lab, "lxc-attach -n unpriv1 -- id -u").strip() == "0"
    # root was given the range in /etc/subuid and /etc/subgid
    assert "root:200000:65536" in sh(lab, "cat /etc/subuid") and "root:200000:65536" in sh(lab, "cat /etc/subgid")
    # a file reconcile wrote belongs to the container's root and group 33 as the container sees them
    assert sh(lab, "stat -c '%a %u %g' /var/lib/lxc/unpriv1/rootfs/etc/app.conf").strip() == "640 200000 200033"
    assert sh(lab, "lxc-attach -n unpriv1 -- stat -c '%a %u %g' /etc/app.conf").strip() == "640 0 33"
    # a gateway on its own subnet, and still no route out of the lab: the node has none
    assert "default via 198.51.100.33" in sh(lab, "lxc-attach -n unpriv1 -- ip -4 route")
    assert "default" not in sh(lab, "ip -4 route")
    rc, objects, _ = run(lab, tree, "--dry-run")
    assert rc == 0 and objects["unpriv1"]["status"] == "in-sync", objects

    # the map of an existing container cannot change in place: recreating is the operator's call
    (tree / "0.yaml").write_text(UNPRIVILEGED.replace("200000", "300000"))
    rc, objects, _ = run(lab, tree, "--dry-run")
    assert rc == 2 and any("recreate required: its ids map as" in n for n in objects["unpriv1"]["notes"]), objects

    # removed from git: destroyed, and the subordinate ids reconcile added go with it
    for f in tree.glob("*.yaml"):
        f.unlink()
    rc, objects, _ = run(lab, tree, "apply")
    assert rc == 0 and "unpriv1" not in sh(lab, "lxc-ls -1")
    assert "root:200000:65536" not in sh(lab, "cat /etc/subuid")


def test_a_mount_entry_and_an_environment_with_a_secret(lab):
    (lab.shared / "data").mkdir(exist_ok=True)
    (lab.shared / "data" / "hello.txt").write_text("from the node\n")
    (lab.shared / "token").write_text("tok-4711\n")
    tree = repo(lab, "mnt", WITH_MOUNT)
    rc, objects, out = run(lab, tree, "apply")
    assert rc == 0 and objects["mnt1"]["status"] == "changed", objects
    assert sh(lab, "lxc-attach -n mnt1 -- cat /srv/data/hello.txt") == "from the node\n"
    assert sh(lab, "lxc-attach -n mnt1 -- touch /srv/data/x", check=False) == ""  # read-only
    assert not (lab.shared / "data" / "x").exists()
    pid = sh(lab, "lxc-info -n mnt1 -p -H").strip()
    environ = lab.read_file(NODE, f"/proc/{pid}/environ").split("\0")
    assert "APP_MODE=production" in environ and "APP_TOKEN=tok-4711" in environ  # the init's own environment
    # the secret is in the config (root only) and nowhere reconcile reports
    assert sh(lab, "stat -c %a /var/lib/lxc/mnt1/config").strip() == "600"
    rc, objects, plan = run(lab, tree, "--dry-run")
    assert rc == 0 and objects["mnt1"]["status"] == "in-sync" and "tok-4711" not in out + plan
    assert "tok-4711" not in sh(lab, f"cat {tree}-state/*.json 2>/dev/null; true")
    # the secret changes at its source: drift, shown without either value
    (lab.shared / "token").write_text("tok-4712\n")
    rc, objects, plan = run(lab, tree, "--dry-run")
    assert rc == 2 and "tok-47" not in plan
    assert {"field": "environment.APP_TOKEN", "observed": "<secret: not the referenced one>",
            "desired": f"<secret: file:{lab.shared}/token>"} in objects["mnt1"]["fields"]
    for f in tree.glob("*.yaml"):
        f.unlink()
    assert run(lab, tree, "apply")[0] == 0


def test_a_container_made_by_hand_is_imported_and_planned_with_nothing_to_do(lab):
    sh(lab, "lxc-create -n hand1 -t busybox >/dev/null")
    before = sh(lab, "cat /var/lib/lxc/hand1/config")
    tree = lab.shared / "hand"
    r = lab.exec(NODE, ["reconcile", "import", "lxc", "--live", "hand1", "--node", NODE, "--output-dir", str(tree),
                        "--secrets-dir", str(lab.shared / "hand-secrets")])
    assert "1 manifest" in r.stdout, r.stdout + r.stderr
    rc, objects, out = run(lab, tree, "--dry-run")
    assert rc == 0 and objects["hand1"]["status"] == "in-sync", out
    rc, objects, out = run(lab, tree, "apply")
    assert rc == 0 and objects["hand1"]["status"] == "in-sync", out
    assert sh(lab, "cat /var/lib/lxc/hand1/config") == before  # nothing to do: untouched
    # from now on reconcile manages it: a change lands, and every line of the config stays once
    text = (tree / "lxc.yaml").read_text().replace("  state: stopped", "  state: running\n  environment: {HELLO: world}")
    (tree / "lxc.yaml").write_text(text.replace("    bridge: lxcbr0\n", "    bridge: hbr0\n    bridgeAddress: "
                                                "198.51.100.49/28\n    addresses: [198.51.100.50/28]\n"))
    rc, objects, out = run(lab, tree, "apply")
    assert rc == 0 and objects["hand1"]["status"] == "changed", out
    assert sh(lab, "lxc-info -n hand1 -s -H").strip() == "RUNNING"
    lines = [ln for ln in sh(lab, "cat /var/lib/lxc/hand1/config").splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == len(set(lines)) and "lxc.environment = HELLO=world" in lines
    assert run(lab, tree, "--dry-run")[0] == 0
    # an adopted container is not reconcile's to destroy: removed from git, it stays
    (tree / "lxc.yaml").unlink()
    rc, objects, out = run(lab, tree, "apply")
    assert rc == 0 and "hand1" in sh(lab, "lxc-ls -1")
    sh(lab, "lxc-stop -k -n hand1; lxc-destroy -n hand1")


def test_a_mount_of_etc_and_a_hook_without_policy_change_nothing(lab):
    bad = WITH_MOUNT.replace("mnt1", "bad1").replace("source: SHARED/data", "source: /etc") + \
        "  config: ['lxc.hook.pre-start = /usr/local/bin/prepare']\n"
    tree = repo(lab, "bad", bad)
    before = sh(lab, "lxc-ls -1; ls /sys/class/net; ls /var/lib/lxc")
    rc, objects, out = run(lab, tree, "apply")
    assert rc == 1 and objects["bad1"]["status"] == "failed", out
    error = objects["bad1"]["error"]
    assert "0.yaml:8: spec.mounts[0].source: mounts the node's /etc" in error, error
    assert "0.yaml:11: spec.config[0]: lxc.hook.pre-start runs /usr/local/bin/prepare on the node as root" in error
    assert sh(lab, "lxc-ls -1; ls /sys/class/net; ls /var/lib/lxc") == before
    # the node's administrator allows the mount: it lands (a read-only view of /etc), the hook is still refused
    lab.write_file(NODE, "/etc/reconcile/policy.yaml", "lxc:\n  mounts: [/etc]\n")
    rc, objects, out = run(lab, tree, "--dry-run")
    assert rc == 1 and "spec.mounts" not in objects["bad1"]["error"] and "lxc.hook" in objects["bad1"]["error"]
    lab.exec(NODE, ["rm", "/etc/reconcile/policy.yaml"])
