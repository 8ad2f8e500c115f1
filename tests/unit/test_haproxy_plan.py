"""How a Backend change is carried out: runtime API commands (no reload) for servers,
a hitless reload for everything else."""
from __future__ import annotations

import copy
from pathlib import Path

from controller.loader import load_tree
from reconcilers.base import Change, Node, Runner
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.haproxy.runtime import RuntimeServer, plan_backend, server_args

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
NODE = Node("lb1", Runner(dry_run=True))


def app() -> dict:
    return HAProxyReconciler().desired(load_tree(FIXTURES / "tree"), NODE)["Backend"]["app"].state


def commands(plan) -> list[str]:
    return [c for op in plan.ops for c in op.commands]


def test_nothing_to_do_when_observed_matches() -> None:
    plan = plan_backend("app", app(), app())
    assert plan.reload == [] and plan.ops == []


def test_weight_address_and_state_are_runtime_commands() -> None:
    observed, want = app(), app()
    observed["servers"]["s2"].update(weight=5, state="maint")
    observed["servers"]["s3"].update(address="127.0.0.9", port=9999)
    plan = plan_backend("app", observed, want)
    assert plan.reload == []
    assert commands(plan) == [
        "set server app/s2 weight 1",
        "set server app/s2 state ready",
        "set server app/s3 addr 127.0.0.1 port 18003",
    ]


def test_an_added_server_is_created_enabled_and_checked() -> None:
    observed, want = app(), app()
    del observed["servers"]["s3"]
    plan = plan_backend("app", observed, want)
    assert plan.reload == []
    assert commands(plan) == [
        "add server app/s3 127.0.0.1:18003 weight 1 check inter 500ms fall 3 rise 2",
        "enable health app/s3",
        "set server app/s3 state ready",  # dynamic servers start in maintenance
    ]


def test_a_server_the_runtime_api_cannot_make_as_the_file_says_is_added_by_a_reload() -> None:
    observed, want = app(), app()
    del observed["servers"]["s3"]
    want["servers"]["s3"]["options"] += " cookie s3"  # `add server` takes no cookie
    assert plan_backend("app", observed, want).reload == ["servers.s3 can only be added by a reload"]
    by_name = {**want["servers"]["s1"], "host": "db1.example.test"}
    del by_name["address"]
    assert server_args(by_name) is None  # a dynamic server never resolves a host name
    observed, want = app(), app()
    del observed["servers"]["s3"]
    want["lines"].append("default-server inter 3s")  # dynamic servers take nothing from default-server
    assert plan_backend("app", observed, want).reload == ["lines changed", "servers.s3 can only be added by a reload"]


def test_a_removed_server_is_drained_then_deleted_after_the_adds() -> None:
    observed, want = app(), app()
    observed["servers"]["old"] = dict(observed["servers"]["s1"])
    del observed["servers"]["s1"]
    plan = plan_backend("app", observed, want)
    assert [(op.server, op.action) for op in plan.ops] == [("s1", "add"), ("old", "remove")]


def test_settings_of_the_backend_need_a_reload() -> None:
    observed, want = app(), app()
    observed["lines"] = ["balance leastconn"]
    observed["servers"]["s1"]["weight"] = 3
    del observed["servers"]["s2"]
    plan = plan_backend("app", observed, want)
    assert plan.reload == ["lines changed"]
    # servers that stay are set at run time first (the saved state carries them over the
    # reload); the added one comes from the new file
    assert commands(plan) == ["set server app/s1 weight 1"]


def test_server_options_and_backup_need_a_reload() -> None:
    observed, want = app(), app()
    observed["servers"]["s1"]["backup"] = True
    observed["servers"]["s2"]["options"] = "inter 2s fall 3 rise 2"
    observed["shared"] = "edited by hand: 'retries 3' -> 'retries 5'"
    plan = plan_backend("app", observed, want)
    assert plan.reload == ["shared changed", "servers.s1.backup changed", "servers.s2.options changed"]


def test_checks_are_switched_at_run_time_only_where_configured() -> None:
    observed, want = app(), app()
    observed["servers"]["s1"]["check"] = False
    runtime = {"s1": RuntimeServer("app", "s1", "127.0.0.1", 18001, 0, 1, check_state=0x02)}
    assert commands(plan_backend("app", observed, want, runtime=runtime)) == ["enable health app/s1"]
    runtime["s1"].check_state = 0  # added without `check`: only the file can give it checks
    assert plan_backend("app", observed, want, runtime=runtime).reload == ["servers.s1 needs health checks configured"]


def test_ignored_fields_are_set_on_add_but_never_corrected() -> None:
    observed, want = app(), app()
    observed["servers"]["s1"]["state"] = "drain"  # an operator's drain
    observed["servers"]["s2"]["weight"] = 9
    del observed["servers"]["s3"]
    want["servers"]["s3"]["state"] = "drain"
    plan = plan_backend("app", observed, want, ignored={"state", "weight"})
    assert commands(plan) == [
        "add server app/s3 127.0.0.1:18003 weight 1 check inter 500ms fall 3 rise 2",
        "enable health app/s3",
        "set server app/s3 state drain",
    ]


def test_a_backend_that_is_not_loaded_is_a_reload() -> None:
    assert plan_backend("app", None, app()).reload == ["backend app is not loaded"]


def test_explain_lists_the_commands_for_the_plan() -> None:
    rec = HAProxyReconciler()
    rec.desired(load_tree(FIXTURES / "tree"), NODE)
    observed = copy.deepcopy(app())
    observed["servers"]["s2"]["weight"] = 5
    notes = rec.explain(Change("Backend", "app", "update", app(), observed), NODE)
    assert notes == ["runtime API, no reload: s2: set server app/s2 weight 1"]
