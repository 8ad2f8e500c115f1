"""Container manifests: bad input is refused by the whole-tree loader with file:line and field.

Every case writes a small broken tree to tmp_path and loads it the way `reconcile` does.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import DEFAULT_REPO
from controller.loader import TreeError, load_tree

GOOD = """\
apiVersion: reconcile/v1
kind: Container
metadata:
  name: app1
spec:
  node: lb1
  template: busybox
  limits: {memory: 64M, cpus: "0-1", cpuWeight: 200}
  network: {type: bridge, bridge: app0, address: 198.51.100.11/24, bridgeAddress: 198.51.100.1/24}
  init: [/bin/httpd, -f, -p, "80", -h, /www]
  files:
    /www/index.html: "hello\\n"
"""


def problems(tmp_path: Path, text: str, extra: str = "") -> list:
    (tmp_path / "containers.yaml").write_text(text)
    if extra:
        (tmp_path / "more.yaml").write_text(extra)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    return err.value.problems


def only(tmp_path: Path, text: str, extra: str = ""):
    found = problems(tmp_path, text, extra)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_the_good_manifest_and_the_example_load(tmp_path):
    (tmp_path / "containers.yaml").write_text(GOOD)
    tree = load_tree(tmp_path)
    assert tree.get("Container", "app1").spec.limits.memory == "64M"
    assert len(load_tree(DEFAULT_REPO).of_kind("Container")) == 3


@pytest.mark.parametrize("name", ["web/1", "..", "../etc", "my app", "app;rm", "app$(id)", "app`id`", "App1",
                                  "app|x", "a&b", "-app"])
def test_container_names_that_could_reach_a_shell_or_a_path_are_refused(tmp_path, name):
    p = only(tmp_path, GOOD.replace("name: app1", f"name: {name!r}"))
    assert (p.file, p.line, p.field) == ("containers.yaml", 4, "metadata.name")
    assert "must be a DNS label" in p.message and repr(name) in p.message


def test_an_unknown_template_names_the_choices(tmp_path):
    p = only(tmp_path, GOOD.replace("template: busybox", "template: ubuntu"))
    assert (p.line, p.field) == (7, "spec.template")
    assert "'busybox', 'download' or 'local'" in p.message and "'ubuntu'" in p.message


@pytest.mark.parametrize("size, words", [("1.5G", "not a memory size"), ("64MB", "not a memory size"),
                                         ("64m", "not a memory size"), ("-1M", "not a memory size"),
                                         ("lots", "not a memory size"), ("1M", "too small")])
def test_a_bad_memory_size_is_refused_with_the_form_to_use(tmp_path, size, words):
    p = only(tmp_path, GOOD.replace("memory: 64M", f"memory: {size}"))
    assert (p.line, p.field) == (8, "spec.limits.memory")
    assert words in p.message and "256M" in p.message or "at least 4M" in p.message


def test_a_memory_size_that_is_a_number_is_a_type_error_not_bytes(tmp_path):
    p = only(tmp_path, GOOD.replace("memory: 64M", "memory: 67108864"))
    assert p.field == "spec.limits.memory" and "string" in p.message


@pytest.mark.parametrize("cpus", ["0-", "a", "0;1", "3-1"])
def test_a_bad_cpu_list_is_refused(tmp_path, cpus):
    p = only(tmp_path, GOOD.replace('cpus: "0-1"', f'cpus: "{cpus}"'))
    assert (p.line, p.field) == (8, "spec.limits.cpus")


@pytest.mark.parametrize("arg", ["a b", "x;y", "$(id)", "`id`", "a|b", "'q'", "a\\nb", ""])
def test_init_arguments_take_no_shell(tmp_path, arg):
    p = only(tmp_path, GOOD.replace('"80"', f'"{arg}"'))
    assert (p.line, p.field) == (10, "spec.init[3]") and "without a shell" in p.message


def test_a_file_path_must_be_an_absolute_file_without_dotdot(tmp_path):
    p = only(tmp_path, GOOD.replace("/www/index.html:", "/www/../../etc/passwd:"))
    assert p.field.startswith("spec.files") and "'..' is not allowed" in p.message
    p = only(tmp_path, GOOD.replace("/www/index.html:", "/www/:"))
    assert p.field.startswith("spec.files") and "name a file" in p.message


def test_download_needs_its_block_and_busybox_takes_none(tmp_path):
    p = only(tmp_path, GOOD.replace("template: busybox", "template: download"))
    assert p.field == "spec" and "template download needs spec.download" in p.message
    p = only(tmp_path, GOOD.replace("template: busybox", "template: busybox\n  download: {distribution: debian, "
                                                         "release: bookworm}"))
    assert "only it takes one" in p.message


def test_local_needs_both_tarballs(tmp_path):
    p = only(tmp_path, GOOD.replace("template: busybox", "template: local\n  local: {rootfs: /srv/rootfs.tar.xz}"))
    assert p.field == "spec.local.metadata" and "required" in p.message


def test_the_container_address_must_sit_in_the_bridge_subnet(tmp_path):
    p = only(tmp_path, GOOD.replace("address: 198.51.100.11/24", "address: 203.0.113.5/24"))
    assert (p.line, p.field) == (9, "spec.network.address")
    assert "not in the bridge's subnet 198.51.100.0/24" in p.message
    p = only(tmp_path, GOOD.replace("address: 198.51.100.11/24", "address: 198.51.100.1/24"))
    assert "the node's own address on app0" in p.message
    p = only(tmp_path, GOOD.replace("address: 198.51.100.11/24", "address: 198.51.100.255/24"))
    assert "broadcast" in p.message


def test_two_containers_on_a_node_must_give_their_bridge_one_address(tmp_path):
    other = GOOD.replace("name: app1", "name: app2").replace("198.51.100.11", "198.51.100.12") \
        .replace("bridgeAddress: 198.51.100.1/24", "bridgeAddress: 198.51.100.2/24")
    p = only(tmp_path, GOOD, other)
    assert (p.file, p.field) == ("more.yaml", "spec.network.bridgeAddress")
    assert "bridge app0 gets 198.51.100.2/24 here but 198.51.100.1/24 from Container 'app1'" in p.message
    # on different nodes the bridges are different interfaces: fine
    (tmp_path / "more.yaml").write_text(other.replace("node: lb1", "node: lb2"))
    load_tree(tmp_path)


def test_two_bridges_of_a_node_must_not_share_a_subnet(tmp_path):
    other = GOOD.replace("name: app1", "name: app2").replace("bridge: app0", "bridge: app1") \
        .replace("198.51.100.11/24", "198.51.100.12/24")
    p = only(tmp_path, GOOD, other)
    assert (p.file, p.field) == ("more.yaml", "spec.network.bridgeAddress")
    assert "overlaps 198.51.100.1/24 on bridge app0 (Container 'app1')" in p.message


def test_one_address_in_two_containers_on_a_node_conflicts(tmp_path):
    other = GOOD.replace("name: app1", "name: app2")
    p = only(tmp_path, GOOD, other)
    assert p.field == "spec.network.address" and "both claim ip 198.51.100.11" in p.message


def test_network_none_takes_no_bridge(tmp_path):
    p = only(tmp_path, GOOD.replace("type: bridge", "type: none"))
    assert p.field == "spec.network" and "takes no bridge" in p.message


def test_an_unknown_field_is_named(tmp_path):
    p = only(tmp_path, GOOD.replace("template: busybox", "template: busybox\n  memory: 64M"))
    assert (p.line, p.field) == (8, "spec.memory") and "unknown field" in p.message


def test_a_relative_lxc_path_is_refused(tmp_path):
    p = only(tmp_path, GOOD.replace("template: busybox", "template: busybox\n  lxcPath: var/lib/lxc"))
    assert p.field == "spec.lxcPath" and "absolute" in p.message


# --- placed by Pacemaker (spec.cluster) ---------------------------------------------------------

CLUSTER = """\
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
PLACED = GOOD.replace("node: lb1", "cluster: web")


def line(text: str, fragment: str) -> int:
    return next(i + 1 for i, ln in enumerate(text.splitlines()) if fragment in ln)


def test_a_container_placed_by_pacemaker_lands_on_every_node_of_its_cluster(tmp_path):
    (tmp_path / "containers.yaml").write_text(PLACED + "  state: stopped\n  restartPolicy: never\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    tree = load_tree(tmp_path)
    assert tree.nodes_of(tree.get("Container", "app1")) == {"lb1", "lb2"}


def test_its_cluster_must_run_pacemaker(tmp_path):
    found = problems(tmp_path, PLACED, CLUSTER.replace("stonithEnabled: false", "stack: none"))
    mine = [p for p in found if p.file == "containers.yaml"]
    assert [(p.line, p.field) for p in mine] == [(line(PLACED, "cluster: web"), "spec.cluster")]
    assert "cluster 'web' has stack: none: no Pacemaker runs there to place this container" in mine[0].message
    # the Cluster says it too, at its own stack line
    assert any(p.file == "more.yaml" and p.field == "spec.stack" for p in found)


@pytest.mark.parametrize("extra, field, words", [
    ("state: frozen", "spec.state", "cannot be frozen"),
    ("autostart: true", "spec.autostart", "a node that boots does not start a second copy"),
    ("startOrder: 10", "spec.startOrder", "only for autostart"),
    ("restartPolicy: onChange", "spec.restartPolicy", "crm_resource --restart -r app1"),
])
def test_nothing_may_ask_reconcile_to_run_what_pacemaker_runs(tmp_path, extra, field, words):
    text = PLACED + f"  {extra}\n"
    p = only(tmp_path, text, CLUSTER)
    assert (p.file, p.line, p.field) == ("containers.yaml", line(text, extra), field)
    assert words in p.message


def test_one_container_name_per_node_also_across_placements(tmp_path):
    # the name is unique per kind: a Pacemaker-placed and a node-placed app1 conflict by name
    found = problems(tmp_path, GOOD, PLACED.replace("198.51.100.11", "198.51.100.12") + "---\n" + CLUSTER)
    assert {(p.file, p.field) for p in found} == {("more.yaml", "metadata.name")}
    assert any("duplicate Container name 'app1'" in p.message for p in found)
    assert any("both claim container /var/lib/lxc:app1" in p.message for p in found)  # on lb1, both
    # and its address is claimed on every node of the cluster
    other = GOOD.replace("name: app1", "name: app2").replace("node: lb1", "node: lb2")
    p = only(tmp_path, PLACED, other + "---\n" + CLUSTER)
    assert p.field == "spec.network.address" and "both claim ip 198.51.100.11" in p.message
