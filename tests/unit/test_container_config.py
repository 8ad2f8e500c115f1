"""Containers as operators write them (issue 20): interfaces, idmap and subordinate ids,
AppArmor, devices, capabilities, mounts, environment, further LXC lines, files with mode and
owner, the node's policy, and adoption — rendered to LXC keys, read back from a config into
the same state, and bad input refused with file:line and field."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.base import ApplyError, Node, Refusal, Runner
from reconcilers.lxc import subids
from reconcilers.lxc.config import CgroupLayout, config_lines, merge_config, parse_config, render_block
from reconcilers.lxc.model import observed_from_config, owned_by, render_settings
from reconcilers.lxc.reconciler import ContainerReconciler
from reconcilers.lxc.rootfs import stat_rootfs_file, write_rootfs_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lxc"
V1 = CgroupLayout(frozenset({"memory", "cpuset", "cpu", "devices"}))
V2 = CgroupLayout()

FULL = """\
apiVersion: reconcile/v1
kind: Container
metadata: {name: app9}
spec:
  node: lb1
  template: busybox
  hostname: app9.example.test
  networks:
    - {type: bridge, bridge: app0, name: eth0, mac: "00:16:3e:00:00:09", mtu: 1400, address: 198.51.100.19/24,
       gateway: 198.51.100.1, bridgeAddress: 198.51.100.1/24}
    - {type: macvlan, link: eth0, address: 192.0.2.119/24, options: {macvlan.mode: bridge}}
  idmap:
    - {type: u, container: 0, host: 100000, count: 65536}
    - {type: g, container: 0, host: 100000, count: 65536}
  apparmor: {profile: generated, allowNesting: true}
  devices: [{deny: a}, {allow: "c 1:3 rwm"}]
  capabilities: {drop: [sys_module, sys_time]}
  mounts:
    - {source: /srv/app9, target: srv/data, options: [bind, create=dir]}
  mountAuto: [proc:mixed, sys:ro]
  environment: {APP_MODE: production, DB_PASSWORD: {file: /etc/reconcile/secrets/db}}
  config: ["lxc.cgroup.devices.allow =", "lxc.sysctl.net.ipv4.ip_forward = 1"]
  files: {/etc/app.conf: "mode=production\\n"}
  fileModes: {/etc/app.conf: {mode: "0640", owner: 0, group: 33}}
"""


def planned(tmp_path: Path, text: str = FULL, layout: CgroupLayout = V1):
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tmp_path / "tree" / "c.yaml").write_text(text)
    rec = ContainerReconciler()
    rec._layout = layout
    tree = load_tree(tmp_path / "tree")
    desired = rec.desired(tree, Node("lb1", Runner(dry_run=True), tmp_path / "state"))["Container"]
    return rec, desired


def problem(tmp_path: Path, text: str):
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tmp_path / "tree" / "c.yaml").write_text(text)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path / "tree")
    (found,) = err.value.problems
    return found


def test_every_typed_field_renders_its_lxc_keys(tmp_path):
    _, desired = planned(tmp_path)
    keys = render_settings("app9", desired["app9"].state, V1)
    assert keys[:2] == [("lxc.cgroup.devices.allow", ""), ("lxc.sysctl.net.ipv4.ip_forward", "1")]  # config first
    for line in [("lxc.net.0.type", "veth"), ("lxc.net.0.link", "app0"), ("lxc.net.0.hwaddr", "00:16:3e:00:00:09"),
                 ("lxc.net.0.mtu", "1400"), ("lxc.net.0.ipv4.gateway", "198.51.100.1"),
                 ("lxc.net.1.type", "macvlan"), ("lxc.net.1.link", "eth0"), ("lxc.net.1.macvlan.mode", "bridge"),
                 ("lxc.uts.name", "app9.example.test"), ("lxc.idmap", "u 0 100000 65536"),
                 ("lxc.apparmor.profile", "generated"), ("lxc.apparmor.allow_nesting", "1"),
                 ("lxc.cgroup.devices.deny", "a"), ("lxc.cgroup.devices.allow", "c 1:3 rwm"),
                 ("lxc.cap.drop", "sys_module"), ("lxc.mount.auto", "proc:mixed sys:ro"),
                 ("lxc.mount.entry", "/srv/app9 srv/data none bind,create=dir 0 0"),
                 ("lxc.environment", "APP_MODE=production")]:
        assert line in keys, line
    # a secret stays a token until apply reads it; on a cgroup v2 node the devices keys are cgroup2's
    assert ("lxc.environment", "DB_PASSWORD=<secret: file:/etc/reconcile/secrets/db>") in keys
    assert ("lxc.environment", "DB_PASSWORD=s3cret") in render_settings("app9", desired["app9"].state, V1,
                                                                       secret=lambda var: "s3cret")
    assert ("lxc.cgroup2.devices.deny", "a") in render_settings("app9", desired["app9"].state, V2)


def test_what_is_rendered_reads_back_as_desired(tmp_path):
    _, desired = planned(tmp_path)
    want = desired["app9"]
    block = render_block("app9", "busybox", 10, render_settings("app9", want.state, V1))
    config = merge_config((FIXTURES / "config-by-hand-app3").read_text().replace("app3", "app9"), block)
    have = observed_from_config("app9", "/var/lib/lxc", config, "stopped")
    have["network"]["bridgeAddress"] = "198.51.100.1/24"
    for field in ("network", "networks", "hostname", "idmap", "apparmor", "devices", "capabilities", "mounts",
                  "mountAuto", "config", "limits", "init"):
        assert have[field] == want.state[field], field
    # the template's own mount entries and capabilities stay outside our block, and are not ours to compare
    assert "/lib lib none ro,bind 0 0" in parse_config(config)["lxc.mount.entry"]
    assert have["mounts"] == ["/srv/app9 srv/data none bind,create=dir 0 0"]


def test_a_field_the_manifest_leaves_out_is_the_templates(tmp_path):
    _, desired = planned(tmp_path, FULL.split("  idmap:")[0])
    want = desired["app9"]
    assert {"/apparmor", "/devices", "/capabilities", "/mounts", "/mountAuto", "/environment"} <= set(want.ignore)
    # writing our block leaves the template's list keys alone, and takes over its single keys we set
    block = render_block("app9", "busybox", 10, render_settings("app9", want.state, V1))
    merged = merge_config((FIXTURES / "config-by-hand-app3").read_text(), block, owned_by(want.state, adopt=False))
    values = parse_config(merged)
    assert values["lxc.mount.entry"][0] == "shm dev/shm tmpfs defaults,create=dir 0 0"
    assert values["lxc.uts.name"] == ["app9.example.test"]  # one, ours


def test_an_adopted_containers_whole_config_is_its_manifest(tmp_path):
    config = (FIXTURES / "config-by-hand-app3").read_text()
    from reconcilers.lxc.importer import import_text
    import yaml

    doc = import_text(config, "/var/lib/lxc/app3/config", {"node": "lb1"}, tmp_path, state="stopped").documents[0]
    rec, desired = planned(tmp_path, yaml.safe_dump(doc))
    want = desired["app3"]
    have = observed_from_config("app3", "/var/lib/lxc", config, "stopped")
    skip = {p.lstrip("/") for p in want.ignore} | {"files"}
    assert {k: v for k, v in have.items() if k not in skip} == {k: v for k, v in want.state.items() if k not in skip}
    assert have["managed"] is False and "/managed" in want.ignore  # made by hand: adopted as it is
    # when reconcile first writes its block, every line the manifest holds moves into it, once
    block = render_block("app3", None, 10, render_settings("app3", want.state, V1))
    merged = merge_config(config, block, owned_by(want.state, adopt=True))
    assert [k for k, _ in config_lines(merged.split("# reconcile-managed")[0])] == []
    assert parse_config(merged)["lxc.mount.entry"] == parse_config(config)["lxc.mount.entry"]
    again = observed_from_config("app3", "/var/lib/lxc", merged, "stopped")
    assert {k: v for k, v in again.items() if k not in skip} == {k: v for k, v in want.state.items() if k not in skip}


@pytest.mark.parametrize("change, field, words", [
    ("  config: ['lxc.utsname = x']\n", "spec.config[0]", "lxc.utsname is LXC 2's name"),
    ("  config: ['lxc.mount.entry = /a b none bind 0 0']\n", "spec.config[0]", "written by spec.mounts"),
    ("  config: ['lxc.net.0.type = veth']\n", "spec.config[0]", "interfaces are spec.network"),
    ("  network: {type: bridge, bridge: br0, address: 198.51.100.9/24, gateway: 192.0.2.1}\n", "spec.network.gateway",
     "not on this interface's subnet"),
    ("  idmap: [{type: u, container: 0, host: 0, count: 65536}, {type: g, container: 0, host: 1000, count: 1}]\n",
     "spec.idmap[0].host", "0 is root on the node"),
    ("  idmap: [{type: u, container: 1, host: 100000, count: 65536}, {type: g, container: 0, host: 1, count: 9}]\n",
     "spec.idmap", "no u range maps the container's root"),
    ("  mounts: [{source: /srv, target: ../etc}]\n", "spec.mounts[0].target", "without '..'"),
    ("  mounts: [{source: shm, target: dev/shm, options: [bind]}]\n", "spec.mounts[0].source", "absolute path"),
    ("  capabilities: {drop: [sys_time], keep: [chown]}\n", "spec.capabilities", "not both"),
    ("  devices: [{allow: 'c 1:3 rwx'}]\n", "spec.devices[0].allow", ""),
    ("  environment: {APP: \"a\\nb\"}\n", "spec.environment.APP", "newline"),
])
def test_bad_container_input_names_file_line_and_field(tmp_path, change, field, words):
    text = "apiVersion: reconcile/v1\nkind: Container\nmetadata: {name: app8}\nspec:\n  node: lb1\n" \
           "  template: busybox\n" + change
    p = problem(tmp_path, text)
    assert (p.file, p.field) == ("c.yaml", field), str(p)
    assert p.line >= 7 and words in p.message, str(p)


# --- the node's policy ----------------------------------------------------------------------------


POLICY_CASES = """\
apiVersion: reconcile/v1
kind: Container
metadata: {name: app7}
spec:
  node: lb1
  template: busybox
  mounts:
    - {source: /etc, target: host-etc, options: [bind, ro]}
    - {source: /sys/kernel/security, target: sys/kernel/security, options: [ro, bind, optional]}
  config:
    - lxc.hook.pre-start = /usr/local/bin/prepare
  network: {type: host}
"""


def refusals(tmp_path, policy: str | None, monkeypatch) -> list[str]:
    path = tmp_path / "policy.yaml"
    if policy is not None:
        path.write_text(policy)
    monkeypatch.setenv("RECONCILE_POLICY", str(path))
    rec, _ = planned(tmp_path, POLICY_CASES)
    node = Node("lb1", Runner(dry_run=True, recording=True), tmp_path / "state")
    found = [r for r in rec.validate(node) if isinstance(r, Refusal)]
    assert all(r.objects == (("Container", "app7"),) for r in found) and len(found) <= 1  # one per object
    return [part for r in found for part in str(r).split("; c.yaml")]


def test_hooks_system_mounts_and_the_nodes_network_need_the_nodes_policy(tmp_path, monkeypatch):
    found = refusals(tmp_path, None, monkeypatch)
    assert [f.removeprefix("c.yaml").split(": ")[0:2] for f in found] == [
        [":11", "spec.config[0]"], [":8", "spec.mounts[0].source"], [":12", "spec.network.type"]]
    assert "does not allow lxc capability 'hooks'" in found[0] and "/etc" in found[1]
    # a read-only mount below /sys (what the busybox template adds) needs nothing


def test_the_policy_allows_what_it_lists(tmp_path, monkeypatch):
    everything = "lxc:\n  allow: [hooks, host-network]\n  mounts: [/etc]\n"
    assert refusals(tmp_path, everything, monkeypatch) == []
    assert len(refusals(tmp_path, "lxc: {allow: [hooks]}\n", monkeypatch)) == 2
    with pytest.raises(ApplyError, match=r"policy.yaml:2: the node policy is not valid YAML"):
        refusals(tmp_path, "not: [valid\n", monkeypatch)  # a broken file is an error naming it, never a guess


# --- subordinate ids and files owned as the container sees them ----------------------------------


def test_subordinate_ids_are_added_once_and_only_ours_removed(tmp_path):
    files = {"u": tmp_path / "subuid", "g": tmp_path / "subgid"}
    files["u"].write_text("alice:200000:65536\n")
    idmap = ["u 0 100000 65536", "g 0 100000 65536"]
    lines = subids.needed(idmap, files)
    assert lines == [f"root:100000:65536 in {files['u']}", f"root:100000:65536 in {files['g']}"]
    assert subids.covered(lines) == []
    node = Node("lb1", Runner(), tmp_path / "state")
    subids.ensure(node, lines, "app9")
    subids.ensure(node, lines, "app8")
    assert files["u"].read_text() == "alice:200000:65536\nroot:100000:65536\n"
    assert subids.covered(lines) == lines
    subids.release(node, "app9", set())
    assert subids.covered(lines) == lines  # app8 still needs them
    subids.release(node, "app8", set())
    assert files["u"].read_text() == "alice:200000:65536\n" and files["g"].read_text() == ""
    # a range someone else gave root is used, never removed
    files["u"].write_text("root:100000:200000\n")
    subids.ensure(node, lines[:1], "app9")
    subids.release(node, "app9", set())
    assert files["u"].read_text() == "root:100000:200000\n"


def test_ids_map_between_the_container_and_the_node():
    idmap = ["u 0 100000 65536", "g 0 100000 65536"]
    assert subids.host_id(idmap, "u", 33) == 100033 and subids.inside_id(idmap, "g", 100033) == 33
    assert subids.host_id(idmap, "u", 70000) is None
    assert subids.host_id([], "u", 33) == 33  # privileged: the same ids


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_files_get_their_mode_and_the_mapped_owner(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    node = Node("lb1", Runner(), tmp_path / "state")
    assert write_rootfs_file(node, rootfs, "/etc/app.conf", b"x\n", 0o640, (100000, 100033)) is True
    assert stat_rootfs_file(rootfs, "/etc/app.conf") == (b"x\n", 0o640, 100000, 100033)
    assert (rootfs / "etc").stat().st_uid == 100000  # the folder made on the way is the container's root's
    assert write_rootfs_file(node, rootfs, "/etc/app.conf", b"x\n", 0o640, (100000, 100033)) is False


def test_letting_go_of_an_adopted_container_keeps_its_settings_without_our_marker():
    from reconcilers.lxc.config import MARKER, release_block

    config = (FIXTURES / "config-by-hand-app3").read_text()
    block = render_block("app3", None, 10, [("lxc.uts.name", "app3"), ("lxc.environment", "A=1")])
    released = release_block(merge_config(config, block))
    assert MARKER not in released and "reconcile" not in released
    assert parse_config(released)["lxc.environment"] == ["A=1"] and parse_config(released)["lxc.uts.name"] == ["app3"]


def test_validating_for_another_node_leaves_its_policy_to_that_node(tmp_path, monkeypatch):
    from reconcilers.base import Skipped

    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "absent.yaml"))
    rec, _ = planned(tmp_path, POLICY_CASES)
    found = rec.validate(Node("lb1", Runner(dry_run=True), tmp_path / "state", local=False))
    assert not [r for r in found if isinstance(r, Refusal)]
    assert any(isinstance(r, Skipped) and "policy" in r for r in found)
