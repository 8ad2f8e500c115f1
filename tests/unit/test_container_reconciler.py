"""The Container reconciler's pure parts: parsers on output recorded from LXC 5.0.2 and
iproute2 in a lab node (tests/fixtures/lxc/), config rendering and merging, create argv,
restart decisions and the plan's notes, and files written into a root file system."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.base import Change, DryRunViolation, Node, Runner
from reconcilers.lxc.config import (
    lxc_line,
    END_MARKER, MARKER, CgroupLayout, canonical_cpus, canonical_memory, marker_name, merge_config, parse_config, render_block, restart_settings_of, shares_of_weight, weight_of_shares,
)
from reconcilers.lxc.reconciler import ContainerReconciler
from reconcilers.lxc.tools import why_invalid, parse_lxc_ls, parse_lxc_ls_pids, parse_monitor_line
from reconcilers.lxc.model import create_argv, file_digest, observed_from_config, render_settings, restart_changes
from reconcilers.lxc.network import observed_bridge_address, parse_links, veth_pair_name
from reconcilers.lxc.rootfs import read_rootfs_file, write_rootfs_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lxc"
V1 = CgroupLayout(frozenset({"memory", "cpuset", "cpu"}))
V2 = CgroupLayout()

EXAMPLE = """\
apiVersion: reconcile/v1
kind: Container
metadata: {name: app1}
spec:
  nodes: [lb1, lb2]
  template: busybox
  autostart: true
  startOrder: 10
  limits: {memory: 64M}
  network: {type: bridge, bridge: app0, address: 198.51.100.11/24, bridgeAddress: 198.51.100.1/24}
  init: [/bin/httpd, -f, -p, "80", -h, /www]
  files: {/www/index.html: "app1\\n"}
  stopTimeout: 2s
---
apiVersion: reconcile/v1
kind: Container
metadata: {name: db1}
spec:
  cluster: web
  template: busybox
---
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
"""


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def reconciler(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "c.yaml").write_text(EXAMPLE)
    rec = ContainerReconciler()
    rec._layout = V1
    node = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    desired = rec.desired(load_tree(tmp_path / "tree"), node)["Container"]
    return rec, node, desired


# --- parsing recorded output -----------------------------------------------------------------


def test_lxc_ls_gives_every_state_lower_cased():
    assert parse_lxc_ls(fixture("lxc-ls.out")) == {"app1": "running", "app2": "frozen", "app3": "stopped"}
    assert parse_lxc_ls(fixture("lxc-ls-empty.out")) == {}
    # with the PID column observe asks for (a frozen container keeps its init)
    assert parse_lxc_ls(fixture("lxc-ls-pid.out")) == {"app2": "frozen", "app3": "stopped", "ct1": "running"}
    assert parse_lxc_ls_pids(fixture("lxc-ls-pid.out")) == {
        "app2": ("frozen", 5254), "app3": ("stopped", None), "ct1": ("running", 4840)}


def test_a_config_lxc_refuses_is_explained_in_lxcs_words():
    # lxc-ls leaves app3x out of its table and says why on stderr (with -l ERROR)
    assert "app3x" not in parse_lxc_ls(fixture("lxc-ls.out"))
    why = 'Unsupported config key "lxc.bogus", at line "lxc.bogus = 1"'
    assert why_invalid(fixture("lxc-ls.err"), "app3x") == why
    assert why_invalid(fixture("lxc-info-invalid.err"), "app3x") == why
    assert why_invalid("Failed to load config for b\n", "b") == "it does not load (lxc-ls skips it)"


def test_a_managed_config_reads_back_as_the_desired_state(reconciler):
    _, _, desired = reconciler
    observed = observed_from_config("app1", "/var/lib/lxc", fixture("config-managed-app1"), "running")
    want = desired["app1"].state
    # bridgeAddress and files are not in the config: observe fills them from ip and the rootfs
    for key in ("managed", "lxcPath", "source", "state", "autostart", "startOrder", "limits", "init"):
        assert observed[key] == want[key], key
    assert observed["network"] == {**want["network"], "bridgeAddress": None}


def test_a_config_made_by_hand_is_not_ours():
    text = fixture("config-by-hand-app3")
    assert marker_name(text) is None
    observed = observed_from_config("app3", "/var/lib/lxc", text, "stopped")
    assert observed["managed"] is False and observed["source"] is None
    assert observed["network"]["type"] == "none" and observed["init"] is None
    # a marker copied with the config (lxc-copy) names another container: still not ours
    assert observed_from_config("app9", "/var/lib/lxc", fixture("config-managed-app1"), "stopped")["managed"] is False


def test_config_parsing_follows_lxc_rules():
    values = parse_config('lxc.uts.name = "c1"\n# c\nlxc.net.0.ipv4.address = 10.0.0.1/24\n'
                          'lxc.net.0.ipv4.address =\nlxc.net.0.ipv4.address = 10.0.0.2/24\n  lxc.start.auto=1\n')
    assert values == {"lxc.uts.name": ["c1"], "lxc.net.0.ipv4.address": ["10.0.0.2/24"], "lxc.start.auto": ["1"]}


def test_limits_read_back_the_same_from_cgroup_v1_and_v2_keys():
    v1 = "lxc.cgroup.memory.limit_in_bytes = 67108864\nlxc.cgroup.cpuset.cpus = 0,1\nlxc.cgroup.cpu.shares = 2048\n"
    v2 = "lxc.cgroup2.memory.max = 65536K\nlxc.cgroup2.cpuset.cpus = 0-1\nlxc.cgroup2.cpu.weight = 200\n"
    for text in (v1, v2):
        assert observed_from_config("c", "/l", text, "stopped")["limits"] == \
            {"memory": "64M", "cpus": "0-1", "cpuWeight": 200}


def test_extra_interfaces_added_by_hand_show_as_drift():
    text = "lxc.net.0.type = empty\nlxc.net.1.type = veth\nlxc.net.1.link = br9\n"
    observed = observed_from_config("c", "/l", text, "stopped")
    assert observed["network"]["type"] == "none"
    assert [(n["type"], n["bridge"], n["name"]) for n in observed["networks"]] == [("bridge", "br9", "eth1")]


def test_ip_addr_tells_bridges_their_addresses_owner_and_ports():
    links = parse_links(fixture("ip-addr.json"))
    app0 = links["app0"]
    assert (app0.kind, app0.ours, app0.up, app0.ipv4) == ("bridge", True, True, ["198.51.100.1/24"])
    assert links["rc-app1"].master == "app0" and links["rc-app1"].kind == "veth"
    assert links["eth0"].ours is False
    assert observed_bridge_address(links, "app0", "198.51.100.1/24") == "198.51.100.1/24"
    assert observed_bridge_address(links, "app0", "198.51.100.254/24") == "198.51.100.1/24"
    assert observed_bridge_address(links, "app9", "198.51.100.1/24") is None
    assert observed_bridge_address(links, "eth0", "198.51.100.1/24") == "(not a bridge: veth)"


def test_cgroup_layout_of_a_hybrid_host_and_of_a_pure_v2_host():
    hybrid = CgroupLayout.parse(fixture("mountinfo-hybrid"))
    assert not hybrid.v2("memory") and not hybrid.v2("cpuset") and not hybrid.v2("cpu")
    pure = CgroupLayout.parse("30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
                              "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
    assert pure.v2("memory") and pure.v2("cpu")


def test_lxc_monitor_lines_become_events():
    events = [parse_monitor_line(line) for line in fixture("lxc-monitor.out").splitlines()]
    assert ("app2", "FROZEN") in events and ("app1", "STOPPED") in events
    assert ("app1", "exited with status 0") in events
    assert parse_monitor_line("garbage") is None


# --- normal forms --------------------------------------------------------------------------


@pytest.mark.parametrize("raw, canon", [("64M", "64M"), ("65536K", "64M"), ("67108864", "64M"), ("1024M", "1G"),
                                        ("1536M", "1536M"), ("1000", "1000"), ("max", "max"), (None, None)])
def test_memory_has_one_normal_form(raw, canon):
    assert canonical_memory(raw) == canon


@pytest.mark.parametrize("raw, canon", [("0", "0"), ("0,1,2", "0-2"), ("3,0-1", "0-1,3"), ("x", "x")])
def test_cpu_sets_have_one_normal_form(raw, canon):
    assert canonical_cpus(raw) == canon


def test_cpu_weight_survives_the_round_trip_through_v1_shares():
    assert shares_of_weight(100) == 1024
    assert all(weight_of_shares(shares_of_weight(w)) == w for w in range(1, 10001))


def test_veth_names_fit_the_kernels_15_characters_and_differ():
    assert veth_pair_name("app1") == "rc-app1"
    long = [veth_pair_name("a" * 50 + str(i)) for i in range(100)]
    assert all(len(n) <= 15 for n in long) and len(set(long)) == 100


# --- rendering -----------------------------------------------------------------------------


def test_the_example_renders_to_the_keys_lxc_took_in_the_lab(reconciler):
    _, _, desired = reconciler
    state = desired["app1"].state
    assert render_settings("app1", state, V1) == [
        ("lxc.start.auto", "1"), ("lxc.start.order", "10"), ("lxc.cgroup.memory.limit_in_bytes", "64M"),
        ("lxc.net.0.type", "veth"), ("lxc.net.0.link", "app0"), ("lxc.net.0.flags", "up"),
        ("lxc.net.0.name", "eth0"), ("lxc.net.0.veth.pair", "rc-app1"),
        ("lxc.net.0.ipv4.address", "198.51.100.11/24"), ("lxc.init.cmd", "/bin/httpd -f -p 80 -h /www"),
    ]
    block = render_block("app1", "busybox", 2, render_settings("app1", state, V1))
    # exactly the block the reconciler wrote in the lab (the recorded config ends with it)
    assert fixture("config-managed-app1").endswith(block)
    assert not any("gateway" in k for k, _ in render_settings("app1", state, V1))


def test_limits_render_for_the_hosts_cgroup_layout():
    state = {"autostart": False, "startOrder": None, "limits": {"memory": "1G", "cpus": "0-1", "cpuWeight": 50},
             "network": {"type": "none"}, "init": None}
    assert render_settings("c", state, V2) == [
        ("lxc.start.auto", "0"), ("lxc.cgroup2.memory.max", "1G"), ("lxc.cgroup2.cpuset.cpus", "0-1"),
        ("lxc.cgroup2.cpu.weight", "50"), ("lxc.net.0.type", "empty")]
    assert ("lxc.cgroup.cpu.shares", "512") in render_settings("c", state, V1)


def test_merging_puts_our_block_last_and_our_keys_nowhere_else():
    by_hand = fixture("config-by-hand-app3") + "lxc.start.auto = 0\nlxc.net.0.link = lxcbr0\n"
    block = render_block("app3", "busybox", 10, [("lxc.start.auto", "1"), ("lxc.net.0.type", "empty")])
    merged = merge_config(by_hand, block)
    assert merged.endswith(block)
    values = parse_config(merged)
    assert values["lxc.start.auto"] == ["1"] and "lxc.net.0.link" not in values
    assert values["lxc.rootfs.path"] == ["dir:/var/lib/lxc/app3/rootfs"]  # the template's keys stay
    # merging again replaces the block instead of adding a second one
    again = merge_config(merged, block)
    assert again == merged and again.count(MARKER) == 1 and again.count(END_MARKER) == 1


def test_restart_policy_never_keeps_the_running_keys_as_they_are():
    kept = dict(restart_settings_of(fixture("config-managed-app1")))
    assert kept["lxc.cgroup.memory.limit_in_bytes"] == "64M" and "lxc.start.auto" not in kept
    assert kept["lxc.init.cmd"] == "/bin/httpd -f -p 80 -h /www"
    # a hand-edited config read as LXC reads it, so that it can be written again as it was meant
    edited = 'lxc.net.0.link = "br0"\nlxc.net.0.ipv4.address = 10.0.0.1/24\nlxc.net.0.ipv4.address =\n'
    kept = restart_settings_of(edited)  # line by line, the clearing line too: LXC reads them the same again
    assert kept == [("lxc.net.0.link", "br0"), ("lxc.net.0.ipv4.address", "10.0.0.1/24"), ("lxc.net.0.ipv4.address", "")]
    assert parse_config("\n".join(lxc_line(k, v) for k, v in kept)) == parse_config(edited)
    assert render_block("c", "busybox", 10, kept).count("lxc.net.0") == 3


def test_create_argv_per_template(reconciler):
    rec, _, _ = reconciler
    spec = rec.specs["app1"]
    assert create_argv("app1", "/var/lib/lxc", spec, "/tmp/seed.conf") == [
        "lxc-create", "-n", "app1", "-P", "/var/lib/lxc", "-B", "dir", "-t", "busybox", "-f", "/tmp/seed.conf"]
    download = spec.model_copy(update={"template": "download", "download": type("D", (), {
        "distribution": "debian", "release": "bookworm", "architecture": "amd64"})()})
    assert create_argv("web", "/srv/lxc", download, "/tmp/s")[-7:] == [
        "--", "--dist", "debian", "--release", "bookworm", "--arch", "amd64"]
    local = spec.model_copy(update={"template": "local", "local": type("L", (), {
        "rootfs": "/srv/img/rootfs.tar.xz", "metadata": "/srv/img/meta.tar.xz"})()})
    assert create_argv("web", "/srv/lxc", local, "/tmp/s")[-5:] == [
        "--", "--metadata", "/srv/img/meta.tar.xz", "--fstree", "/srv/img/rootfs.tar.xz"]


def test_download_and_local_sources_are_recorded_for_people(tmp_path):
    (tmp_path / "c.yaml").write_text(EXAMPLE.split("---")[0].replace(
        "template: busybox", "template: download\n  download: {distribution: debian, release: bookworm}"))
    rec = ContainerReconciler()
    state = rec.desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True)))["Container"]["app1"].state
    assert state["source"] == "download debian/bookworm/amd64"


# --- desired, restart decisions and the plan's notes -----------------------------------------


def test_desired_holds_node_placed_and_pacemaker_placed_containers(reconciler):
    rec, _, desired = reconciler
    assert set(desired) == {"app1", "db1"} and rec.cluster_placed == {"db1"}
    assert desired["app1"].state["files"] == {"/www/index.html": file_digest(b"app1\n")}
    assert desired["app1"].state["pacemaker"] is None and "/state" not in desired["app1"].ignore
    # what the manifest leaves out is the template's: not compared
    assert set(desired["app1"].ignore) == {"/hostname", "/apparmor", "/devices", "/capabilities", "/mounts",
                                           "/mountAuto", "/environment"}
    # what Pacemaker places is desired too (test_container_placed.py has the rest)
    assert desired["db1"].state["pacemaker"] == {"cluster": "web", "mayRunHere": True}


def _have(desired, **changes):
    import copy

    have = copy.deepcopy(desired["app1"].state)
    for path, value in changes.items():
        target = have
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return have


def test_limits_network_and_init_need_a_restart_autostart_and_files_do_not(reconciler):
    _, _, desired = reconciler
    want = desired["app1"].state
    assert restart_changes(_have(desired, limits__memory="32M"), want) == ["limits.memory"]
    assert restart_changes(_have(desired, network__address="198.51.100.99/24", init=None), want) == \
        ["network.address", "init"]
    assert restart_changes(_have(desired, autostart=False, startOrder=None, files={}, state="stopped"), want) == []
    assert restart_changes(_have(desired, network__bridgeAddress=None), want) == []


def test_the_plan_says_restart_required_and_what_the_policy_does(reconciler):
    rec, node, desired = reconciler
    want = desired["app1"].state
    change = Change("Container", "app1", "update", want, _have(desired, limits__memory="32M"))
    assert rec.explain(change, node) == ["restart required (limits.memory): restartPolicy onChange, "
                                         "apply stops and starts the container"]
    rec.specs["app1"] = rec.specs["app1"].model_copy(update={"restartPolicy": "never"})
    assert "restartPolicy never, the running container is left alone" in rec.explain(change, node)[0]
    stopped = Change("Container", "app1", "update", want, _have(desired, limits__memory="32M", state="stopped"))
    assert rec.explain(stopped, node) == ["limits.memory: taken at the next start"]


def test_the_plan_reports_a_container_made_by_hand_as_a_conflict(reconciler):
    rec, node, desired = reconciler
    hand = observed_from_config("app1", "/var/lib/lxc", fixture("config-by-hand-app3"), "stopped")
    notes = rec.explain(Change("Container", "app1", "update", desired["app1"].state, hand), node)
    assert notes[0].startswith("conflict: container app1 in /var/lib/lxc was not created by reconcile")
    assert "`# reconcile-managed: Container/app1`" in notes[0]


def test_a_source_or_path_change_is_not_done_in_place(reconciler):
    rec, node, desired = reconciler
    change = Change("Container", "app1", "update", desired["app1"].state, _have(desired, source="local x"))
    assert "recreate required: it was created from local x" in rec.explain(change, node)[0]


def test_apply_refuses_to_touch_a_container_made_by_hand(reconciler, tmp_path):
    from reconcilers.base import ApplyError

    rec, _, desired = reconciler
    hand = observed_from_config("app1", "/var/lib/lxc", fixture("config-by-hand-app3"), "stopped")
    node = Node("lb1", Runner(dry_run=False, recording=True), tmp_path / "state")
    with pytest.raises(ApplyError, match="not created by reconcile"):
        rec.apply_one(Change("Container", "app1", "update", desired["app1"].state, hand), node)
    assert node.runner.records == []  # not one command ran


# --- files in the root file system -------------------------------------------------------------


def test_files_are_written_atomically_and_only_when_different(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    node = Node("lb1", Runner(recording=True))
    assert write_rootfs_file(node, rootfs, "/www/index.html", b"hi\n") is True
    assert (rootfs / "www" / "index.html").read_bytes() == b"hi\n"
    assert oct((rootfs / "www" / "index.html").stat().st_mode & 0o777) == "0o644"
    assert write_rootfs_file(node, rootfs, "/www/index.html", b"hi\n") is False
    assert [r.what for r in node.runner.records] == ["write"]
    assert os.listdir(rootfs / "www") == ["index.html"]


def test_files_never_follow_a_symlink_out_of_the_root_file_system(tmp_path):
    from reconcilers.base import ApplyError

    rootfs, outside = tmp_path / "rootfs", tmp_path / "host-etc"
    rootfs.mkdir()
    outside.mkdir()
    (rootfs / "www").symlink_to(outside)  # a process in the container can do this
    with pytest.raises(ApplyError, match="symlink"):
        write_rootfs_file(Node("lb1", Runner()), rootfs, "/www/index.html", b"x")
    assert list(outside.iterdir()) == []
    (outside / "index.html").write_text("host secret")
    assert read_rootfs_file(rootfs, "/www/index.html") is None
    (rootfs / "leaf").symlink_to(outside / "index.html")
    assert read_rootfs_file(rootfs, "/leaf") is None


def test_a_fifo_in_place_of_a_file_does_not_hang_observe(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert read_rootfs_file(tmp_path, "/pipe") is None


def test_writing_files_is_refused_in_dry_run(tmp_path):
    with pytest.raises(DryRunViolation):
        write_rootfs_file(Node("lb1", Runner(dry_run=True)), tmp_path, "/x", b"y")
    assert not (tmp_path / "x").exists()


def test_a_file_changed_in_git_shows_as_a_short_unified_diff(tmp_path):
    lxc = tmp_path / "lxc"
    rootfs = lxc / "app1" / "rootfs"
    (rootfs / "www").mkdir(parents=True)
    (rootfs / "www" / "index.html").write_text("app1\nsecond line\n")
    (lxc / "app1" / "config").write_text(f"lxc.rootfs.path = dir:{rootfs}\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "c.yaml").write_text(EXAMPLE.replace(
        'files: {/www/index.html: "app1\\n"}', f'files: {{/www/index.html: "app1 v2\\nsecond line\\n"}}\n  lxcPath: {lxc}'))
    rec = ContainerReconciler()
    rec._layout = V1
    node = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    want = rec.desired(load_tree(tmp_path / "tree"), node)["Container"]["app1"].state
    have = dict(want, files={"/www/index.html": file_digest(b"app1\nsecond line\n")})
    notes = rec.explain(Change("Container", "app1", "update", want, have), node)
    assert notes[:5] == ["--- /www/index.html (on the node)", "+++ /www/index.html (from git)", "@@ -1,2 +1,2 @@",
                         "-app1", "+app1 v2"]


# --- the root file system reconcile created, and nothing else ----------------------------------


def _container_dir(tmp_path: Path, rootfs_line: str | None = None) -> tuple[Path, Path]:
    """A container `app1` in LXC path tmp/lxc as lxc-create -B dir leaves it, our block added;
    `rootfs_line` replaces its lxc.rootfs.path line (a hand edit)."""
    lxc = tmp_path / "lxc"
    (lxc / "app1" / "rootfs" / "www").mkdir(parents=True)
    text = fixture("config-managed-app1").replace("/var/lib/lxc", str(lxc))
    if rootfs_line is not None:
        text = re.sub(r"(?m)^lxc\.rootfs\.path = .*$", rootfs_line, text)
    (lxc / "app1" / "config").write_text(text)
    return lxc, lxc / "app1" / "rootfs"


def _pointed_at(rec, tmp_path, lxc):
    spec = rec.specs["app1"].model_copy(update={"lxcPath": str(lxc)})
    rec.specs["app1"] = spec
    return spec


def test_files_go_only_into_the_rootfs_reconcile_created(reconciler, tmp_path):
    rec, _, _ = reconciler
    lxc, rootfs = _container_dir(tmp_path)
    _pointed_at(rec, tmp_path, lxc)
    node = Node("lb1", Runner(recording=True), tmp_path / "state")
    rec._write_files(node, "app1")
    assert (rootfs / "www" / "index.html").read_text() == "app1\n"


def test_a_config_edited_to_point_its_rootfs_elsewhere_is_never_written_into(reconciler, tmp_path):
    from reconcilers.base import ApplyError

    rec, _, _ = reconciler
    elsewhere = tmp_path / "host-etc"
    (elsewhere / "www").mkdir(parents=True)
    lxc, rootfs = _container_dir(tmp_path, f"lxc.rootfs.path = dir:{elsewhere}")
    _pointed_at(rec, tmp_path, lxc)
    node = Node("lb1", Runner(recording=True), tmp_path / "state")
    with pytest.raises(ApplyError, match=r"conflict: the config of container app1 .* puts its root file system at "
                                         rf"dir:{elsewhere}, not at dir:{rootfs}"):
        rec._write_files(node, "app1")
    assert list((elsewhere / "www").iterdir()) == [] and list((rootfs / "www").iterdir()) == []
    assert node.runner.records == []


def test_the_plan_shows_a_moved_rootfs_as_a_conflict_and_apply_refuses_it(reconciler, tmp_path):
    from reconcilers.base import ApplyError

    rec, node, desired = reconciler
    want = desired["app1"].state
    assert want["rootfs"] == "dir:/var/lib/lxc/app1/rootfs"
    text = fixture("config-managed-app1").replace("dir:/var/lib/lxc/app1/rootfs", "dir:/etc")
    have = observed_from_config("app1", "/var/lib/lxc", text, "running")
    assert have["managed"] and have["rootfs"] == "dir:/etc"
    notes = rec.explain(Change("Container", "app1", "update", want, have), node)
    assert notes[0].startswith("conflict: the config of container app1 (/var/lib/lxc/app1/config) puts its root "
                               "file system at dir:/etc, not at dir:/var/lib/lxc/app1/rootfs")
    delete = rec.explain(Change("Container", "app1", "delete", None, have), node)
    assert delete[0].startswith("conflict:") and "nor destroys it" in delete[0]
    applying = Node("lb1", Runner(recording=True), tmp_path / "state")
    with pytest.raises(ApplyError, match="neither writes files into it nor destroys it"):
        rec.apply_one(Change("Container", "app1", "update", want, have), applying)
    assert applying.runner.records == []


@pytest.mark.parametrize("edit", ["config", "symlinked rootfs", "symlinked container folder"])
def test_a_container_whose_rootfs_is_not_where_reconcile_put_it_is_never_destroyed(reconciler, tmp_path, edit):
    from reconcilers.base import ApplyError

    rec, _, _ = reconciler
    elsewhere = tmp_path / "host-etc"
    elsewhere.mkdir()
    (elsewhere / "passwd").write_text("root:x:0:0\n")
    if edit == "config":
        lxc, _ = _container_dir(tmp_path, f"lxc.rootfs.path = dir:{elsewhere}")
    elif edit == "symlinked rootfs":
        lxc, rootfs = _container_dir(tmp_path)
        rootfs.rename(tmp_path / "old-rootfs")
        rootfs.symlink_to(elsewhere)
    else:
        lxc, _ = _container_dir(tmp_path)
        (lxc / "app1").rename(tmp_path / "real-app1")
        (lxc / "app1").symlink_to(tmp_path / "real-app1")
    node = Node("lb1", Runner(recording=True), tmp_path / "state")
    have = {"lxcPath": str(lxc), "state": "stopped", "network": {"bridge": None}, "pacemaker": None}
    with pytest.raises(ApplyError, match="neither writes files into it nor destroys it"):
        rec.apply_one(Change("Container", "app1", "delete", None, have), node)
    assert node.runner.records == []  # no lxc-stop, no lxc-destroy
    assert (elsewhere / "passwd").read_text() == "root:x:0:0\n"


def test_observe_reads_files_only_from_the_created_rootfs(tmp_path):
    from reconcilers.lxc.rootfs import RootFs

    lxc, rootfs = _container_dir(tmp_path)
    (rootfs / "www" / "index.html").write_text("app1\n")
    assert read_rootfs_file(RootFs(str(lxc), "app1"), "/www/index.html") == b"app1\n"
    (tmp_path / "elsewhere").mkdir()
    rootfs.rename(tmp_path / "moved")
    rootfs.symlink_to(tmp_path / "moved")  # same content, but through a symlink: not read
    assert read_rootfs_file(RootFs(str(lxc), "app1"), "/www/index.html") is None
    assert read_rootfs_file(RootFs(str(lxc), "app1"), "/../config") is None


def test_lxcs_native_check_leaves_no_lock_folder_behind(tmp_path):
    from reconcilers.lxc.tools import scratch_lxc_path

    run = tmp_path / "run"
    run.mkdir()
    lock_dir = run / "lxc" / "lock"
    with scratch_lxc_path(lock_dir) as scratch:
        # what LXC does for `lxc-ls -P scratch` of a container c1, run as root
        (lock_dir / str(scratch).lstrip("/")).mkdir(parents=True)
        (lock_dir / str(scratch).lstrip("/") / ".c1").write_text("")
        assert scratch.is_dir()
    assert not scratch.exists() and list(run.iterdir()) == []

    # what was there before stays, and so does what another LXC user put there meanwhile
    (lock_dir / "var" / "lib" / "lxc").mkdir(parents=True)
    with scratch_lxc_path(lock_dir) as scratch:
        (lock_dir / str(scratch).lstrip("/")).mkdir(parents=True)
        (lock_dir / "tmp" / "someone-else").mkdir()
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "lxc", "lxc/lock", "lxc/lock/tmp", "lxc/lock/tmp/someone-else", "lxc/lock/var", "lxc/lock/var/lib",
        "lxc/lock/var/lib/lxc"]
