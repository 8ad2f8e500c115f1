"""Galera: the bootstrap node must be named before a galera resource is accepted, bad input
is refused as `file:line: field: message`, each node's option file is rendered, written,
observed and compared (its SST password never leaving), and the status endpoint's verdict."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.loader import TreeError, load_tree
from reconcilers.base import ApplyError, Change, Health, Node, Runner, UnsafeValue
from reconcilers.galera import GaleraReconciler, health, render
from reconcilers.galera.status import judge, parse
from tests.readonly_allowlist import allowed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "galera"
SECRET = "Sst.Pass-4711"


def example(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    return root


def edit(root: Path, name: str, old: str, new: str) -> Path:
    f = root / name
    text = f.read_text()
    assert old in text, old
    f.write_text(text.replace(old, new, 1))
    return f


def problems(root: Path) -> list[str]:
    """The loader's problems, minus the one that follows from a refused Galera manifest (the
    galera resource then has no Galera naming its bootstrap node, and says so too)."""
    with pytest.raises(TreeError) as err:
        load_tree(root)
    out = [str(p) for p in err.value.problems]
    cascade = [p for p in out if ": spec.agent: a galera resource needs a Galera manifest" in p]
    return out if len(cascade) == len(out) else [p for p in out if p not in cascade]


def line_of(f: Path, marker: str) -> int:
    text = f.read_text()
    return text[:text.index(marker)].count("\n") + 1


def test_the_example_is_valid_and_lists_the_bootstrap_node_last(tmp_path):
    tree = load_tree(example(tmp_path))
    [galera] = tree.of_kind("Galera")
    assert galera.spec.bootstrap == "lb1"
    resource = tree.get("ClusterResource", "galera")
    assert resource.spec.params["wsrep_cluster_address"] == "gcomm://lb2,lb3,lb1"


def test_a_galera_without_a_bootstrap_node_is_refused(tmp_path):
    root = example(tmp_path)
    f = edit(root, "galera.yaml", "  bootstrap: lb1\n", "")
    out = problems(root)
    assert len(out) == 1 and out[0].startswith(f"galera.yaml:{line_of(f, 'spec:')}: spec.bootstrap: "), out


def test_a_bootstrap_node_outside_the_cluster_is_refused(tmp_path):
    root = example(tmp_path)
    f = edit(root, "galera.yaml", "bootstrap: lb1", "bootstrap: lb9")
    out = problems(root)
    assert any(p.startswith(f"galera.yaml:{line_of(f, 'bootstrap:')}: spec.bootstrap: node 'lb9' is not a member")
               for p in out), out


def test_a_galera_resource_without_a_galera_manifest_naming_the_bootstrap_node_is_refused(tmp_path):
    root = example(tmp_path)
    text = (root / "galera.yaml").read_text()
    first, rest = text.split("\n---\n", 1)
    (root / "galera.yaml").write_text(rest)
    out = problems(root)
    assert len(out) == 1 and ": spec.agent: a galera resource needs a Galera manifest for cluster 'db'" in out[0], out
    assert out[0].startswith("galera.yaml:"), out


@pytest.mark.parametrize("address,says", [
    ("gcomm://lb1,lb2,lb3", "names lb1 as the node that may bootstrap"),  # lb3 would bootstrap a new cluster
    ("gcomm://lb2,lb1", "must list the members of cluster 'db'"),
    ("gcomm://192.0.2.12,192.0.2.13,192.0.2.11", "by their node names"),
    ("lb2,lb3,lb1", "must list the members"),
])
def test_a_cluster_address_that_would_let_another_node_bootstrap_is_refused(tmp_path, address, says):
    root = example(tmp_path)
    f = edit(root, "galera.yaml", "gcomm://lb2,lb3,lb1   #", f"{address}   #")
    out = problems(root)
    assert len(out) == 1, out
    assert out[0].startswith(f"galera.yaml:{line_of(f, 'wsrep_cluster_address:')}: "
                             "spec.params.wsrep_cluster_address: "), out
    assert says in out[0] and "gcomm://lb2,lb3,lb1" in out[0]


def test_a_refused_tree_changes_nothing_and_exits_1(tmp_path, capsys):
    root = example(tmp_path)
    edit(root, "galera.yaml", "gcomm://lb2,lb3,lb1   #", "gcomm://lb1,lb2,lb3   #")
    assert main(["validate", "--repo", str(root)]) == 1
    assert "spec.params.wsrep_cluster_address" in capsys.readouterr().err


@pytest.mark.parametrize("setting,says", [
    ("bind-address: 0.0.0.0", "reconcile sets bind-address from spec.bindAddress"),
    ("wsrep_cluster_address: gcomm://x", "from the Cluster's members"),
    ("wsrep_sst_auth: root:pw", "from spec.sst.user"),
    ("wsrep_notify_cmd: /usr/local/bin/notify", "run a program"),
    ("init-file: /tmp/x.sql", "run a program"),
    ('sql_mode: "A\\"B"', "no quote, backslash or line break"),
    ("max_connections: \"200 \"", "no blank at either end"),
    ("max-connections: \"9\"\n    max_connections: \"9\"", "one option to mysqld"),
    ('Bad-Name: "1"', "must be a mysqld option name"),
])
def test_settings_that_fight_typed_fields_run_programs_or_break_the_line_are_refused(tmp_path, setting, says):
    root = example(tmp_path)
    f = edit(root, "galera.yaml", "    max_connections: \"200\"\n", f"    {setting}\n")
    out = problems(root)
    assert len(out) == 1 and out[0].startswith(f"galera.yaml:{line_of(f, setting.splitlines()[-1].strip())}: spec.settings"), out
    assert says in out[0], out


@pytest.mark.parametrize("sst,says", [
    ("{method: mariabackup}", "need user and password"),
    ("{method: mariabackup, user: sst, password: Sst.Pass-4711}", "spec.sst.password"),
    ("{method: rsync, user: sst}", "take no user"),
    ("{method: xtrabackup}", "spec.sst.method"),
])
def test_a_bad_state_transfer_is_refused_and_an_inline_password_never_echoed(tmp_path, sst, says):
    root = example(tmp_path)
    edit(root, "galera.yaml", "sst: {method: rsync}", f"sst: {sst}")
    out = problems(root)
    assert len(out) == 1 and says in out[0], out
    assert SECRET not in out[0]


def test_a_value_is_written_bare_or_quoted_and_never_breaks_the_line():
    assert render.mycnf_value("128M", "x") == "128M"
    assert render.mycnf_value("gcache.size=1G; gcs.fc_limit=128", "x") == '"gcache.size=1G; gcs.fc_limit=128"'
    assert render.mycnf_value("a#b", "x") == '"a#b"'
    for bad in ('a"b', "a\\b", "a\nb", " a", ""):
        with pytest.raises(UnsafeValue):
            render.mycnf_value(bad, "x")


@pytest.fixture
def mariabackup(tmp_path) -> Path:
    root = example(tmp_path)
    secret = tmp_path / "sst.password"
    secret.write_text(SECRET + "\n")
    edit(root, "galera.yaml", "sst: {method: rsync}",
         f"sst: {{method: mariabackup, user: sst, password: {{file: {secret}}}}}")
    return root


def plan(root: Path, path: Path, node: str = "lb2") -> tuple[GaleraReconciler, dict, dict, Node]:
    rec = GaleraReconciler(str(path))
    n = Node(node, Runner())
    desired = rec.desired(load_tree(root), n)["Galera"]
    return rec, desired, rec.observe(n)["Galera"], n


def test_each_node_gets_its_own_address_and_the_same_cluster_address(tmp_path):
    rec, desired, observed, _ = plan(example(tmp_path), tmp_path / "galera.cnf")
    lines = desired["db"].state["lines"]
    assert "bind_address = 192.0.2.12" in lines and "wsrep_node_address = 192.0.2.12" in lines
    assert "wsrep_node_name = lb2" in lines and "wsrep_cluster_address = gcomm://lb2,lb3,lb1" in lines
    assert lines.index("[mysqld]") < lines.index("max_connections = 200") < lines.index("[galera]")
    assert observed == {}


def test_the_file_is_written_0640_root_mysql_observed_in_sync_and_hand_edits_are_drift(tmp_path, mariabackup):
    path = tmp_path / "galera.cnf"
    rec, desired, _, node = plan(mariabackup, path)
    rec.apply_one(Change("Galera", "db", "create", desired["db"].state, None), node)
    text = path.read_text()
    assert f"wsrep_sst_auth = sst:{SECRET}" in text and oct(path.stat().st_mode & 0o777) == "0o640"
    assert path.stat().st_gid != 0  # group mysql reads it
    rec, desired, observed, _ = plan(mariabackup, path)
    assert observed["db"] == desired["db"].state  # the password compared inside, shown as a token
    assert "wsrep_sst_auth = <secret: in sync>" in observed["db"]["lines"]
    assert SECRET not in str(observed) and SECRET not in str(desired["db"].state)
    (tmp_path / "sst.password").write_text("rotated\n")
    _, desired, observed, _ = plan(mariabackup, path)
    assert "wsrep_sst_auth = <secret: differs>" in observed["db"]["lines"]
    path.write_text(text.replace("max_connections = 200", "max_connections = 10"))
    _, desired, observed, _ = plan(mariabackup, path)
    assert "max_connections = 10" in observed["db"]["lines"] and observed["db"] != desired["db"].state


def test_a_file_reconcile_did_not_write_is_left_alone(tmp_path):
    path = tmp_path / "galera.cnf"
    path.write_text("[galera]\nwsrep_on = ON\n")
    rec, desired, observed, node = plan(example(tmp_path), path)
    assert observed["db"]["foreign"] is True
    with pytest.raises(ApplyError, match="was not written by reconcile"):
        rec.apply_one(Change("Galera", "db", "update", desired["db"].state, observed["db"]), node)
    assert path.read_text() == "[galera]\nwsrep_on = ON\n"


def test_renaming_a_galera_keeps_the_file_whatever_order_create_and_delete_run_in(tmp_path):
    root = example(tmp_path)
    path = tmp_path / "galera.cnf"
    rec, desired, _, node = plan(root, path)
    rec.apply_one(Change("Galera", "db", "create", desired["db"].state, None), node)
    edit(root, "galera.yaml", "  name: db                          # wsrep_cluster_name", "  name: orders")
    rec, desired, observed, node = plan(root, path)
    assert set(observed) == {"db"} and set(desired) == {"orders"}
    rec.apply_one(Change("Galera", "orders", "create", desired["orders"].state, None), node)
    rec.apply_one(Change("Galera", "db", "delete", None, observed["db"]), node)
    assert "wsrep_cluster_name = orders" in path.read_text()
    rec.apply_one(Change("Galera", "orders", "delete", None, desired["orders"].state), node)
    assert not path.exists()


def test_the_plan_says_who_may_bootstrap_and_that_mariadb_is_never_restarted(tmp_path):
    rec, desired, _, node = plan(example(tmp_path), tmp_path / "galera.cnf")
    notes = rec.explain(Change("Galera", "db", "update", desired["db"].state, {}), node)
    assert any("only lb1 may start a new cluster" in n for n in notes)
    assert any("never restarts a Galera member" in n for n in notes)


STATUS = "wsrep_local_state\t{state}\nwsrep_local_state_comment\t{comment}\nwsrep_cluster_status\t{primary}\n" \
         "wsrep_ready\tON\n"


@pytest.mark.parametrize("state,comment,primary,donor_ok,ok", [
    ("4", "Synced", "Primary", False, True),
    ("2", "Donor/Desynced", "Primary", False, False),
    ("2", "Donor/Desynced", "Primary", True, True),
    ("1", "Joining", "Primary", True, False),
    ("4", "Synced", "non-Primary", False, False),
])
def test_the_status_endpoint_passes_only_a_synced_node_of_the_primary_component(state, comment, primary, donor_ok, ok):
    found = parse(STATUS.format(state=state, comment=comment, primary=primary))
    verdict, why = judge(found, donor_ok)
    assert verdict is ok
    assert (comment in why) if primary == "Primary" else ("Primary" in why)


def test_the_status_endpoint_refuses_a_node_that_reports_nothing():
    assert judge({}) == (False, "not in a Primary component (unknown)")


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "galera"


def recorded(name: str) -> dict[str, str]:
    """`mariadb -N -B -e "SHOW GLOBAL STATUS LIKE 'wsrep_%'"` on a lab node (tests/lab/test_galera.py's cluster)."""
    return health.read((FIXTURES / name).read_text())


def test_health_of_a_synced_member_of_the_whole_cluster_recorded_on_a_lab_node():
    status = recorded("wsrep-status-synced.txt")
    assert health.judge(status, 3) == Health.healthy("Synced", "Synced in a Primary component of 3")
    assert judge(status) == (True, "Synced")


def test_health_of_a_desynced_member_recorded_on_a_lab_node_is_degraded_and_out_of_the_pool():
    status = recorded("wsrep-status-desynced.txt")
    verdict = health.judge(status, 3)
    assert (verdict.status, verdict.reason) == ("Degraded", "Donor")
    assert judge(status) == (False, "Donor/Desynced") and judge(status, donor_ok=True)[0]


def test_health_says_when_members_are_missing_or_the_component_is_not_primary():
    status = recorded("wsrep-status-synced.txt")
    assert health.judge({**status, "wsrep_cluster_size": "2"}, 3).reason == "MembersMissing"
    assert health.judge({**status, "wsrep_cluster_status": "non-Primary"}, 3).reason == "NonPrimary"
    assert health.judge({}, 3).reason == "NotAMember"


def test_health_reads_mysqld_with_one_command_on_the_read_only_allow_list():
    assert allowed("exec", health.STATUS_ARGV)
