"""The blast-radius guard (which resources a change may disrupt) and crm_verify's errors
pinned on the object they are about, on CIBs pcs and crmsh wrote."""
from __future__ import annotations

import copy
from pathlib import Path

from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.pacemaker import guard, tools
from reconcilers.pacemaker.importer import import_cluster
from reconcilers.pacemaker.resources import ClusterResourceReconciler
from reconcilers.pacemaker.tools import Action

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"


def cib(name: str):
    return tools.parse_xml((FIXTURES / name).read_text())


def test_what_is_tied_to_a_changed_resource_may_follow_it_and_nothing_else():
    configuration = cib("cib_pcs_vocabulary.xml").find("configuration")
    # db-vip is colocated with and ordered after db-clone: a change of db moves it too
    assert {"db", "db-clone", "db-vip"} <= guard.related([configuration], {"db", "db-clone"})
    # the group's members follow the group; the order set ties ping-clone to web-tier
    assert {"web", "web-data", "ping-clone", "ping"} <= guard.related([configuration], {"web-tier"})
    # the fencing devices are tied to nothing: they may not be moved by a change of db
    assert "fence-lb2" not in guard.related([configuration], {"db"})


def test_only_new_disruptive_actions_on_untouched_resources_are_refused():
    baseline = [Action("other", "recover", node="lb1")]  # already under way: not the change's
    candidate = [Action("other", "recover", node="lb1"), Action("web", "move", source="lb1", dest="lb2"),
                 Action("db-vip", "move", source="lb1", dest="lb2"), Action("new", "start", node="lb2"),
                 Action("ping:1", "stop", node="lb3"), Action("x", "stop", node="lb1", blocked=True)]
    found = guard.disruptions(baseline, candidate, allowed={"db-vip", "new"})
    assert [a.describe() for a in found] == ["web: move lb1 → lb2", "ping:1: stop on lb3"]
    message = guard.refusal(found)
    assert "web: move lb1 → lb2" in message and "--allow-disruption" in message
    assert "Reconcile-Allow: disruption" in message


def test_a_crm_verify_error_is_pinned_on_the_object_whose_element_it_names(tmp_path):
    """A schema error names a line of the file crm_verify read; the element there (or an
    ancestor) belongs to one object, which alone is held back."""
    original = cib("cib_crmsh_vocabulary.xml")
    docs, _ = import_cluster(original, (FIXTURES / "corosync.conf.vocabulary").read_text())
    import yaml

    (tmp_path / "tree.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    rec = ClusterResourceReconciler()
    node = Node("lb1", Runner(dry_run=True), state_dir=tmp_path / "state")
    rec.desired(load_tree(tmp_path), node)
    broken = copy.deepcopy(original)
    broken.find(".//op[@id='p_db-monitor-10s']").set("role", "Primary")  # a role Pacemaker does not know
    errors = tools.verify_details(node, broken)
    assert errors and "p_db" in errors[0].ids
    assert rec._culprit(errors, list(rec._states), True) == ("ClusterResource", "p_db")
    dangling = copy.deepcopy(original)
    dangling.find(".//rsc_colocation[@id='anti']").set("with-rsc", "gone")
    errors = tools.verify_details(node, dangling)
    assert rec._culprit(errors, list(rec._states), True) == ("ClusterConfig", "vocab")  # a cluster-level one


def test_a_commit_allows_disruption_for_its_own_revision_only(tmp_path):
    """`Reconcile-Allow: disruption` in the commit being applied lets an agent pass the
    guard for that revision; the next commit without it does not."""
    import subprocess

    from controller.engine import revision_allowances

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    (tmp_path / "empty.yaml").write_text("")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "Move db off lb1\n\nReconcile-Allow: disruption")
    node = Node("lb1", Runner(dry_run=True))
    assert revision_allowances(load_tree(tmp_path), node) == {"disruption"}
    lazy = Node("lb1", Runner(dry_run=True), allow_from=lambda: revision_allowances(load_tree(tmp_path), node))
    assert lazy.allows("disruption") and lazy.allow_from is None  # asked once
    git("commit", "-q", "--allow-empty", "-m", "Something else")
    assert revision_allowances(load_tree(tmp_path), node) == frozenset()
    (tmp_path / "more.yaml").write_text("")  # not committed: the tree is not that commit
    assert revision_allowances(load_tree(tmp_path), node) == frozenset()


def test_the_guards_read_of_the_commit_trailers_is_on_the_read_only_allow_list_as_recorded():
    """A dry-run records argv through shlex.join, which quotes the --format argument (it has
    parentheses): the allow-list takes it quoted, and nothing else after it."""
    from tests.readonly_allowlist import allowed

    argv = ["git", "-C", "/srv/reconcile-lab/x/shared/repo", "log", "-1",
            "--format=%(trailers:key=Reconcile-Allow,valueonly)", "61aede52d059f382c83dad80cda79d866d1ecb9a"]
    assert allowed("exec", argv)
    assert not allowed("exec", argv[:-1] + ["61aede52d059f382c83dad80cda79d866d1ecb9a; rm -rf /"])
    assert not allowed("exec", argv[:5] + ["--format=%(trailers:key=Reconcile-Allow,valueonly)'"] + argv[6:])
