"""VirtualIP, Keepalived and VirtualServer manifests: bad input refused with file:line and
field, and what each node's keepalived.conf gets from them (rendered, never run here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.base import Change, Deferred, Node, Runner
from reconcilers.keepalived.conf import parse
from reconcilers.keepalived.model import instances_in, state_of
from reconcilers.keepalived.reconciler import KeepalivedReconciler
from reconcilers.keepalived.render import render_node, render_text, track_weight

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
    - {name: lb3, id: 3, address: 192.0.2.13/24}
"""
STATE = Path("/var/lib/reconcile")


def vip(name: str = "web-vip", address: str = "192.0.2.100/24", keepalived: str = "routerId: 51",
        placement: str = "cluster: web", extra: str = "") -> str:
    body = "\n".join("    " + line for line in keepalived.splitlines())
    where = f"  address: {address}\n" if address else ""
    return (f"---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: {name}\nspec:\n  {placement}\n"
            f"  manager: keepalived\n{where}{extra}  keepalived:\n{body}\n")


def settings(body: str, name: str = "web", placement: str = "cluster: web") -> str:
    body = "\n".join("  " + line for line in body.splitlines())
    return f"---\napiVersion: reconcile/v1\nkind: Keepalived\nmetadata:\n  name: {name}\nspec:\n  {placement}\n{body}\n"


def tree(tmp_path: Path, *docs: str):
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "vips.yaml").write_text("".join(docs))
    return load_tree(tmp_path)


def problems(tmp_path: Path, *docs: str) -> list:
    with pytest.raises(TreeError) as err:
        tree(tmp_path, *docs)
    return err.value.problems


def line_of(tmp_path: Path, text: str, occurrence: int = 1) -> int:
    lines = (tmp_path / "vips.yaml").read_text().splitlines()
    return [i + 1 for i, line in enumerate(lines) if text in line][occurrence - 1]


def rendered(t, node: str = "lb1") -> str:
    return render_text(t, node, STATE, lambda ref: f"<{ref.describe()}>")[0].text


def instance(t, node: str, name: str) -> dict:
    return state_of(parse(rendered(t, node)), lambda k, v: v)[f"vrrp_instance {name}"]


# --- bad input ------------------------------------------------------------------------------


def test_address_outside_the_interface_subnet(tmp_path):
    [p] = problems(tmp_path, vip(address="198.51.100.100/24"))
    assert (p.file, p.line, p.field) == ("vips.yaml", line_of(tmp_path, "address:"), "spec.address")
    assert "outside the subnet" in p.message and "192.0.2.0/24" in p.message


@pytest.mark.parametrize("rid", [0, 256])
def test_router_id_out_of_range(tmp_path, rid):
    [p] = problems(tmp_path, vip(keepalived=f"routerId: {rid}"))
    assert (p.line, p.field) == (line_of(tmp_path, "routerId"), "spec.keepalived.routerId")


def test_the_same_router_id_twice_on_one_interface(tmp_path):
    [p] = problems(tmp_path, vip(), vip(name="api-vip", address="192.0.2.101/24"))
    assert (p.line, p.field) == (line_of(tmp_path, "routerId", 2), "spec.keepalived.routerId")
    assert "router id 51 on eth0 (IPv4) is already used by VirtualIP 'web-vip'" in p.message


def test_one_router_id_for_an_ipv4_and_an_ipv6_instance_is_fine(tmp_path):
    tree(tmp_path, vip(), vip(name="web6", address="2001:db8::100/64"))


def test_a_router_id_clash_through_the_per_family_split_is_refused(tmp_path):
    # web-vip carries both families, so it is two instances; web6's router id clashes with
    # the IPv6 one, although the two manifests' first addresses are of different families.
    both = vip(address="", extra="  addresses:\n    - {address: 192.0.2.100/24}\n    - {address: '2001:db8::100/64'}\n")
    [p] = problems(tmp_path, both, vip(name="web6", address="2001:db8::101/64"))
    assert p.field == "spec.keepalived.routerId" and p.line == line_of(tmp_path, "routerId", 2)
    assert "(IPv6) is already used by VirtualIP 'web-vip' (its per-family instance)" in p.message


def test_the_same_router_id_on_disjoint_nodes_is_fine(tmp_path):
    tree(tmp_path, vip(placement="nodes: [lb1, lb2]"), vip(name="api-vip", address="192.0.2.101/24",
                                                          placement="node: lb3"))


@pytest.mark.parametrize("priority", [0, 255])
def test_priority_out_of_range(tmp_path, priority):
    [p] = problems(tmp_path, vip(keepalived=f"routerId: 51\npriority: {{lb1: {priority}}}"))
    assert (p.line, p.field) == (line_of(tmp_path, "priority"), "spec.keepalived.priority.lb1")


def test_one_address_in_two_vips(tmp_path):
    [p] = problems(tmp_path, vip(), vip(name="api-vip", keepalived="routerId: 52"))
    assert (p.line, p.field) == (line_of(tmp_path, "address:", 2), "spec.address")
    assert "web-vip" in p.message and "192.0.2.100" in p.message


def test_priority_for_a_node_that_is_not_the_vips(tmp_path):
    [p] = problems(tmp_path, vip(placement="nodes: [lb1, lb2]", keepalived="routerId: 51\npriority: {lb3: 200}"))
    assert p.field == "spec.keepalived.priority.lb3" and "not a node of this VIP" in p.message


def test_advert_interval_must_be_whole_centiseconds_and_whole_seconds_with_vrrp2(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\nadvertInterval: 0.125"))
    assert p.field == "spec.keepalived" and "centiseconds" in p.message
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\nversion: 2\nadvertInterval: 0.5"))
    assert "whole seconds with VRRPv2" in p.message


def test_track_haproxy_needs_preempt(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\npreempt: false\ntrackHaproxy: true"))
    assert p.field == "spec.keepalived" and "trackHaproxy needs preempt" in p.message


def test_the_vips_of_a_group_must_agree(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\ngroup: web"),
                   vip(name="api-vip", address="192.0.2.101/24", keepalived="routerId: 51\ngroup: web\n"
                                                                            "advertInterval: 1"))
    assert (p.line, p.field) == (line_of(tmp_path, "advertInterval"), "spec.keepalived.advertInterval")
    assert "share one VRRP instance" in p.message


def test_a_group_and_an_ungrouped_vip_may_not_share_an_instance_name(tmp_path):
    ps = problems(tmp_path, vip(name="web"), vip(name="api-vip", address="192.0.2.101/24",
                                                 keepalived="routerId: 52\ngroup: web"))
    assert [p.field for p in ps] == ["spec.keepalived.group"]


def test_a_node_without_an_address_cannot_send_adverts(tmp_path):
    # No Cluster lists lb1 and lb2, so there is no address to send unicast adverts from.
    (tmp_path / "vips.yaml").write_text(vip(placement="nodes: [lb1, lb2]"))
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    [p] = err.value.problems
    assert p.field == "spec.keepalived" and "node lb1 has no address in any Cluster" in p.message


def test_a_password_inline_is_refused_without_echoing_it(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\nversion: 2\n"
                                            "authentication: {type: PASS, password: hunter22}"))
    assert p.field == "spec.keepalived.authentication.password" and p.line == line_of(tmp_path, "authentication")
    assert "by reference only" in p.message and "hunter22" not in p.message


def test_authentication_is_vrrp2_only(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\nauthentication: {type: PASS, password: {env: KA_PW}}"))
    assert "VRRPv2 only" in p.message


def test_a_shell_line_as_a_script_is_refused(tmp_path):
    [p] = problems(tmp_path, vip(), settings("globalDefs: {scriptUser: root}\nscripts:\n"
                                             "  chk: {command: 'pgrep haproxy || exit 1'}"))
    assert p.field == "spec.scripts.chk.command" and p.line == line_of(tmp_path, "command:")
    assert "argv list" in p.message and "never a shell line" in p.message


def test_a_shell_with_dash_c_is_a_shell_line_too(tmp_path):
    [p] = problems(tmp_path, vip(), settings("globalDefs: {scriptUser: root}\nscripts:\n"
                                             "  chk: {command: [/bin/sh, -c, 'pgrep haproxy']}"))
    assert p.field == "spec.scripts.chk.command" and "sh -c runs a shell line" in p.message


def test_a_script_file_outside_the_managed_folder_is_refused(tmp_path):
    [p] = problems(tmp_path, vip(), settings("files:\n  - path: /etc/cron.d/evil\n"
                                             "    content: \"#!/bin/sh\\nexit 0\\n\""))
    assert p.field == "spec.files[0]" and p.line == line_of(tmp_path, "- path:")
    assert "outside the managed folder /etc/keepalived/reconcile" in p.message
    [p] = problems(tmp_path, vip(), settings("files:\n  - path: ../../cron.d/evil\n"
                                             "    content: \"#!/bin/sh\\nexit 0\\n\""))
    assert "outside the managed folder" in p.message


def test_a_script_others_can_change_or_an_unshipped_managed_script_is_refused(tmp_path):
    [p] = problems(tmp_path, vip(), settings("files:\n  - {path: chk.sh, mode: 0777, content: \"#!/bin/sh\\n\"}"))
    assert "lets others change the script" in p.message
    [p] = problems(tmp_path, vip(), settings("globalDefs: {scriptUser: root}\n"
                                             "scripts: {chk: {command: [/etc/keepalived/reconcile/chk.sh]}}"))
    assert p.field == "spec.scripts.chk.command[0]" and "no Keepalived manifest of node lb1 ships it" in p.message


def test_a_program_needs_a_named_user(tmp_path):
    [p] = problems(tmp_path, vip(), settings("scripts: {chk: {command: [/usr/bin/pgrep, haproxy]}}"))
    assert p.field == "spec.scripts.chk.user" and "which user runs it" in p.message


def test_tracked_scripts_must_be_defined_where_the_vip_runs(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\ntrack: {scripts: [{name: chk_web}]}"))
    assert p.field == "spec.keepalived.track.scripts[0].name" and "unknown script 'chk_web'" in p.message


@pytest.mark.parametrize("line, why", [
    ("script /bin/evil", "runs a program"),
    ("auth_pass hunter22", "holds a secret"),
    ("include /tmp/x.conf", "reads other files"),
    ("garp_master_delay 1 }", "open or close a block"),
    ("use_vmac # comment", "start a comment"),
    ("$X=1", "definition"),
    ("priority 200", "has a typed field here"),
])
def test_a_verbatim_line_cannot_smuggle_programs_secrets_blocks_or_typed_keywords(tmp_path, line, why):
    ps = problems(tmp_path, vip(keepalived=f"routerId: 51\nextra: [{line!r}]"))
    assert ps and why in ps[0].message and ps[0].field.startswith("spec.keepalived")


def test_sync_groups_name_instances_of_their_nodes_once(tmp_path):
    ps = problems(tmp_path, vip(), settings("syncGroups:\n  G1: {instances: [web-vip, nope]}\n"
                                            "  G2: {instances: [web-vip]}"))
    messages = {p.field: p.message for p in ps}
    assert "is not a keepalived VirtualIP" in messages["spec.syncGroups.G1.instances[1]"]
    assert "already in sync group 'G1'" in messages["spec.syncGroups.G2.instances[0]"]


def test_keepalived_names_are_taken_as_keepalived_writes_them(tmp_path):
    t = tree(tmp_path, vip(name="VI_1"), vip(name="lb-vips.2", address="192.0.2.101/24", keepalived="routerId: 52"))
    assert {i.name for i in render_node(t, "lb1", STATE, str).instances} == {"VI_1", "lb-vips.2"}
    [p] = problems(tmp_path, vip(name="VI 1"))
    assert p.field == "metadata.name"


# --- rendered per node --------------------------------------------------------------------------


def test_each_node_gets_its_priority_unicast_peers_and_starts_as_backup(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\npriority: {lb2: 200}\nadvertInterval: 0.1"))
    lb1, lb2, lb3 = (instance(t, n, "web-vip") for n in ("lb1", "lb2", "lb3"))
    assert (lb1["priority"], lb2["priority"], lb3["priority"]) == ("100", "200", "80"), "unnamed: 100, 90, 80"
    assert lb1["unicast_src_ip"] == "192.0.2.11" and lb1["unicast_peer"] == ["192.0.2.12", "192.0.2.13"]
    assert lb2["unicast_peer"] == ["192.0.2.11", "192.0.2.13"]
    assert lb1["state"] == "BACKUP" and lb1["version"] == "3" and lb1["advert_int"] == "0.1"
    assert lb1["virtual_ipaddress"] == ["192.0.2.100/24"]
    assert lb1["track_file"] == ["reconcile_drain"], "every instance tracks the drain file"


def test_a_group_is_one_instance_carrying_every_address(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\ngroup: web"),
             vip(name="api-vip", address="192.0.2.101/24", keepalived="routerId: 51\ngroup: web"))
    [inst] = render_node(t, "lb1", STATE, str).instances
    assert inst.name == "web" and inst.addresses == ("192.0.2.100/24", "192.0.2.101/24")
    assert inst.owners == ("web-vip", "api-vip")


def test_both_families_become_one_instance_each_and_vrrp2_with_a_password_stays_ipv4(tmp_path):
    t = tree(tmp_path, vip(address="", extra="  addresses:\n    - {address: 192.0.2.100/24}\n"
                                               "    - {address: '2001:db8::100/64'}\n"
                                               "    - {address: 198.51.100.5/24, dev: eth1, label: 'eth1:vip'}\n",
                           keepalived="routerId: 51\nversion: 2\nauthentication: {type: PASS, password: "
                                      "{file: /etc/reconcile/secrets/pw}}"))
    v4, v6 = instance(t, "lb1", "web-vip"), instance(t, "lb1", "web-vip_v6")
    assert v4["virtual_ipaddress"] == ["192.0.2.100/24", "198.51.100.5/24 dev eth1 label eth1:vip"]
    assert v4["version"] == "2" and v4["authentication"]["auth_pass"] == "<file:/etc/reconcile/secrets/pw>"
    assert v6["virtual_ipaddress"] == ["2001:db8::100/64"] and v6["version"] == "3"
    assert "authentication" not in v6 and "unicast_peer" not in v6, "IPv6 adverts go multicast (no v6 peers)"


def test_programs_render_as_argv_with_script_security_and_a_named_user(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\ntrack: {scripts: [{name: chk, weight: -20}]}\n"
                                      "notify: {master: {command: [/usr/bin/logger, -t, ka, now MASTER], user: root}}"),
             settings("globalDefs: {scriptUser: nobody}\nscripts:\n  chk: {command: [/usr/bin/curl, -sf, "
                      "'http://localhost/'], interval: 2, fall: 2, rise: 2}"))
    text = rendered(t)
    assert 'script "/usr/bin/curl -sf http://localhost/"' in text
    assert "notify_master \"/usr/bin/logger -t ka 'now MASTER'\" root" in text
    assert "enable_script_security" in text and "script_user nobody" in text
    assert "chk weight -20" in text


def test_sync_groups_carry_the_per_family_instances(tmp_path):
    t = tree(tmp_path, vip(address="", extra="  addresses:\n    - {address: 192.0.2.100/24}\n"
                                               "    - {address: '2001:db8::100/64'}\n"),
             vip(name="api-vip", address="192.0.2.101/24", keepalived="routerId: 52"),
             settings("syncGroups: {G1: {instances: [web-vip, api-vip]}}"))
    group = state_of(parse(rendered(t)), lambda k, v: v)["vrrp_sync_group G1"]
    assert group["group"] == ["web-vip", "web-vip_v6", "api-vip"]


def test_the_haproxy_track_drops_a_dead_proxy_below_every_live_one(tmp_path):
    prios = {"lb1": 150, "lb2": 100, "lb3": 90}
    w = track_weight(prios)
    assert all(p - w < min(prios.values()) for p in prios.values())
    assert 150 - w >= 1, "still above zero: with no proxy anywhere the address stays somewhere"
    t = tree(tmp_path, vip(keepalived="routerId: 51\ntrackHaproxy: true"))
    text = rendered(t)
    assert 'script "/usr/bin/pgrep --ns 1 --nslist pid -x haproxy"' in text and "track_haproxy weight -21" in text
    assert "script_user root" in text and "enable_script_security" in text


def test_a_virtual_server_renders_its_real_servers_and_checks(tmp_path):
    t = tree(tmp_path, vip(), "---\napiVersion: reconcile/v1\nkind: VirtualServer\nmetadata: {name: dns}\n"
             "spec:\n  cluster: web\n  address: 192.0.2.100\n  port: 53\n  protocol: UDP\n"
             "  extra: [lb_algo wlc, lb_kind DR]\n  realServers:\n    - address: 192.0.2.21\n      port: 53\n"
             "      extra: [weight 100]\n      checks:\n        - {type: DNS_CHECK, extra: [type A, name example.test]}\n")
    vs = state_of(parse(rendered(t)), lambda k, v: v)["virtual_server 192.0.2.100 53"]
    assert vs["protocol"] == "UDP" and vs["lb_algo"] == "wlc" and vs["lb_kind"] == "DR"
    assert vs["real_server 192.0.2.21 53"]["DNS_CHECK"] == {"type": "A", "name": "example.test"}


def test_no_keepalived_manifest_means_reconciles_defaults_and_nothing_for_other_nodes(tmp_path):
    t = tree(tmp_path, vip(placement="nodes: [lb1, lb2]"))
    cfg = render_node(t, "lb1", STATE, str)
    assert cfg.owners() == ["reconcile/defaults", "VirtualIP/web-vip"]
    assert render_node(t, "lb3", STATE, str).sections == []


# --- the reconciler's desired state ----------------------------------------------------------------


def test_desired_objects_and_their_plan_state(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\nversion: 2\n"
                                      "authentication: {type: PASS, password: {file: /etc/reconcile/secrets/pw}}"))
    desired = KeepalivedReconciler().desired(t, Node("lb1", Runner(dry_run=True), STATE))
    state = desired["VirtualIP"]["web-vip"].state
    assert state["keepalived"] == "running" and state["staleAddress"] is False
    assert state["config"]["vrrp_instance web-vip"]["authentication"]["auth_pass"] == \
        "<secret file:/etc/reconcile/secrets/pw>", "the plan shows where the password comes from, never it"
    assert desired["Keepalived"] == {}, "no Keepalived manifest: reconcile's defaults are part of each VIP"
    assert state["config"]["global_defs"] == {"router_id": "lb1"}
    assert state["config"]["track_file reconcile_drain"]["weight"] == "0"


def test_pacemaker_vips_are_listed_and_deferred_while_no_reconciler_makes_them(tmp_path, monkeypatch):
    import reconcilers
    from reconcilers.keepalived.reconciler import PACEMAKER_NOTE

    monkeypatch.setitem(reconcilers.REGISTRY, "ClusterResource", "reconcilers.not_there:Nothing")
    pm = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n  cluster: web\n"
          "  manager: pacemaker\n  address: 192.0.2.110/24\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("stack: none", "stack: pacemaker\n  crypto: none\n  stonithEnabled: false"))
    (tmp_path / "vips.yaml").write_text(pm)
    node = Node("lb1", Runner(dry_run=True))
    rec = KeepalivedReconciler()
    desired = rec.desired(load_tree(tmp_path), node)["VirtualIP"]
    assert desired["db-vip"].state == {"manager": "pacemaker", "address": "192.0.2.110/24"}
    change = Change("VirtualIP", "db-vip", "create", desired["db-vip"].state, None)
    assert rec.explain(change, node) == [PACEMAKER_NOTE]
    assert isinstance(rec.apply([change], node)[change.key], Deferred)


def test_pacemaker_vips_belong_to_the_cluster_resource_reconciler_once_it_is_installed(tmp_path):
    pm = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n  cluster: web\n"
          "  manager: pacemaker\n  address: 192.0.2.110/24\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("stack: none", "stack: pacemaker\n  crypto: none\n  stonithEnabled: false"))
    (tmp_path / "vips.yaml").write_text(pm)
    desired = KeepalivedReconciler().desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True)))
    assert desired["VirtualIP"] == {}


def test_programs_are_refused_where_the_node_policy_does_not_allow_them(tmp_path, monkeypatch):
    t = tree(tmp_path, vip(keepalived="routerId: 51\ntrack: {scripts: [{name: chk}]}\n"
                                      "notify: {master: {command: [/usr/bin/logger, up], user: root}}"),
             settings("globalDefs: {scriptUser: root}\nscripts: {chk: {command: [/usr/bin/true]}}"))
    node = Node("lb1", Runner(dry_run=True), STATE)
    rec = KeepalivedReconciler()
    rec.desired(t, node)
    policy = tmp_path / "policy.yaml"
    monkeypatch.setenv("RECONCILE_POLICY", str(policy))
    refusals = rec._policy(node)
    by = {r.objects: r.message for r in refusals}
    assert set(by) == {(("VirtualIP", "web-vip"),), (("Keepalived", "web"),)}
    assert by[(("VirtualIP", "web-vip"),)].startswith(f"vips.yaml:{line_of(tmp_path, 'notify:')}: "
                                                      "spec.keepalived.notify.master: runs /usr/bin/logger")
    assert "does not allow keepalived capability 'notify'" in by[(("VirtualIP", "web-vip"),)]
    assert f"this node's policy ({policy} (absent))" in by[(("VirtualIP", "web-vip"),)]
    assert "does not allow keepalived capability 'scripts'" in by[(("Keepalived", "web"),)]
    policy.write_text("keepalived: {allow: [scripts, notify]}\n")
    assert rec._policy(node) == []


def test_directives_that_write_files_need_the_node_policy_too(tmp_path, monkeypatch):
    t = tree(tmp_path, vip(), settings("globalDefs: {extra: [reload_file /etc/shadow]}\n"
                                       "trackFiles: {maint: {file: /etc/passwd, initFile: {value: 0, overwrite: true}}}"))
    node = Node("lb1", Runner(dry_run=True), STATE)
    rec = KeepalivedReconciler()
    rec.desired(t, node)
    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "policy.yaml"))
    [refusal] = rec._policy(node)
    assert refusal.objects == (("Keepalived", "web"),)
    assert "init_file 0 overwrite; reload_file /etc/shadow" in refusal.message
    assert "does not allow keepalived capability 'files'" in refusal.message
    (tmp_path / "policy.yaml").write_text("keepalived: {allow: [files]}\n")
    assert rec._policy(node) == []


def test_instance_facts_of_the_rendering_match_what_observe_reads_back(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\npreempt: false"))
    cfg = render_node(t, "lb2", STATE, str)
    back = instances_in(parse(rendered(t, "lb2")))
    assert [(i.name, i.priority, i.nopreempt, i.addresses) for i in back] == \
        [(i.name, i.priority, i.nopreempt, i.addresses) for i in cfg.instances]


def test_a_vip_placed_everywhere_on_a_machine_no_cluster_lists_is_an_error_for_people(tmp_path):
    """Issue 22 found a KeyError here (`reconcile validate` on a machine that is no node)."""
    from reconcilers.base import ApplyError

    (tmp_path / "v.yaml").write_text("apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {name: v}\nspec:\n"
                                     "  nodes: [\"*\"]\n  manager: keepalived\n  address: 192.0.2.100/24\n  keepalived: {routerId: 5}\n")
    with pytest.raises(ApplyError, match="VirtualIP v lands on every node, but no Cluster lists vm"):
        render_node(load_tree(tmp_path), "vm", STATE, str)
