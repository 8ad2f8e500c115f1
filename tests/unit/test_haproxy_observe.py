"""HAProxy observation: parsers on output recorded from haproxy 2.6 in a lab node, and the
normalized Frontend/Backend dicts built from the file plus the runtime, compared with what
the manifests render."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.base import UNFINISHED, ApplyError, Node, Runner
from reconcilers.haproxy.config import line_changes, parse_config
from reconcilers.haproxy.parse import Snapshot, server_state
from reconcilers.haproxy.process import haproxy_errors, section_digests
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.haproxy.runtime import admin_state, parse_servers_state, parse_show_proc, parse_stat, used_connections
from reconcilers.haproxy.state import EDITED, FOREIGN, IN_SYNC, NOT_IN_FILE, NOT_RUNNING, observed_states

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
NODE = Node("lb1", Runner(dry_run=True))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def reconciler() -> HAProxyReconciler:
    rec = HAProxyReconciler()
    rec.desired(load_tree(FIXTURES / "tree"), NODE)
    return rec


def observed(config: str | None = None) -> dict:
    """The recorded lab state: tree/haproxy.yaml applied, then by hand: app/s2 drained,
    legacy/l1 in maintenance, app/s4 added at run time; legacy/dead fails its check."""
    frontends, backends = parse_stat(fixture("show-stat.csv"))
    snap = Snapshot(parse_config(fixture("haproxy.cfg") if config is None else config), True,
                    parse_servers_state(fixture("show-servers-state.txt")), frontends, backends)
    return observed_states(reconciler().model, snap, NODE)


def desired() -> dict:
    return {k: {n: d.state for n, d in v.items()} for k, v in reconciler().desired(load_tree(FIXTURES / "tree"),
                                                                                   NODE).items()}


# --- the runtime API's answers ----------------------------------------------------------------


def test_show_servers_state_gives_address_weight_admin_state_and_checks() -> None:
    servers = parse_servers_state(fixture("show-servers-state.txt"))
    assert sorted(servers) == ["app", "legacy"]
    assert sorted(servers["app"]) == ["s1", "s2", "s3", "s4"]
    s2, l1, dead = servers["app"]["s2"], servers["legacy"]["l1"], servers["legacy"]["dead"]
    assert (s2.address, s2.port, s2.weight, s2.state) == ("127.0.0.1", 18002, 1, "drain")
    assert l1.state == "maint" and l1.check_state & 0x04
    assert (dead.port, dead.weight, dead.state) == (18099, 3, "ready")  # down by its check: not an admin state
    assert servers["app"]["s4"].weight == 2 and servers["app"]["s4"].fqdn == ""


@pytest.mark.parametrize("bits, state", [(0, "ready"), (1, "maint"), (5, "maint"), (4, "ready"), (8, "drain"),
                                         (0x10, "drain"), (0x02, "maint"), (0x20, "maint"), (9, "maint")])
def test_admin_state_bits(bits: int, state: str) -> None:
    # 4 alone (CMAINT) is a server the file said `disabled` that was set ready at run time
    assert admin_state(bits) == state


def test_show_stat_gives_proxies_modes_algorithms_backup_and_maxconn() -> None:
    frontends, backends = parse_stat(fixture("show-stat.csv"))
    assert {n: f.mode for n, f in frontends.items()} == {"legacy": "tcp", "web": "http"}
    assert (backends["app"].mode, backends["app"].algo) == ("http", "roundrobin")
    assert (backends["legacy"].mode, backends["legacy"].algo) == ("tcp", "source")
    assert backends["legacy"].servers["l2"]["bck"] == "1"
    assert backends["legacy"].servers["l1"]["slim"] == "50"
    assert backends["legacy"].servers["dead"]["status"] == "DOWN"


def test_show_proc_after_a_good_and_a_failed_reload() -> None:
    good = parse_show_proc(fixture("show-proc.txt"))
    assert (good.reloads, good.failed, good.new_workers) == (6, 0, [91])
    failed = parse_show_proc(fixture("show-proc-failed-reload.txt"))
    assert failed.failed == 1 and failed.new_workers == []  # the old worker keeps serving
    with pytest.raises(ApplyError):
        parse_show_proc("Unknown command.\n")


def test_show_servers_conn_counts_connections_in_use() -> None:
    text = fixture("show-servers-conn.txt")
    assert used_connections(text) == {"s1": 0, "s2": 0, "s3": 0, "s4": 0}
    busy = text.replace("app/s1 4/1 127.0.0.1 18001 - 5000 0", "app/s1 4/1 127.0.0.1 18001 - 5000 3")
    assert used_connections(busy)["s1"] == 3


def test_haproxy_c_errors_name_the_section_and_line() -> None:
    text = fixture("haproxy.cfg").replace("    hash-type consistent\n", "    hash-type consistent\n    frobnicate yes\n")
    output = fixture("haproxy-c-error.txt").replace(":65]", f":{text.splitlines().index('    frobnicate yes') + 1}]")
    assert haproxy_errors(output, text).startswith("backend legacy (line ")
    assert haproxy_errors(output, text).endswith("): unknown keyword 'frobnicate' in 'backend' section")


# --- server lines --------------------------------------------------------------------------------


def test_a_server_line_splits_into_runtime_fields_and_the_rest() -> None:
    name, server = server_state("server web.1 [2001:db8::5]:8080 weight 3 maxconn 20 check inter 1s cookie w1 disabled")
    assert name == "web.1"
    assert server == {"address": "2001:db8::5", "port": 8080, "weight": 3, "maxconn": 20, "backup": False,
                      "state": "maint", "check": True, "options": "inter 1s cookie w1"}
    _, by_name = server_state("server db1 db1.corp.example.test:5432 check port 8008", ["check", "inter", "2s"])
    assert by_name["host"] == "db1.corp.example.test" and "address" not in by_name
    assert by_name["check"] is True and by_name["options"] == "port 8008"
    _, inherited = server_state("server s 10.0.0.1:80 no-check", ["check", "weight", "5"])
    assert (inherited["check"], inherited["weight"]) == (False, 5)


# --- the generated file ----------------------------------------------------------------------


def test_render_matches_the_golden_file() -> None:
    text = reconciler().render(NODE)["/etc/haproxy/haproxy.cfg"]
    assert text == fixture("haproxy.cfg")


def test_a_file_without_our_header_is_foreign() -> None:
    debian = "global\n\tlog /dev/log local0\ndefaults\n\tmode http\n"
    assert parse_config(debian).foreign_proxies == []  # the package default: safe to take over
    mine = debian + "frontend www\n\tbind :80\n  backend api\n\tserver a 10.0.0.1:80\n"  # an indented section
    assert parse_config(mine).foreign_proxies == ["frontend www", "backend api"]
    assert parse_config(None).text is None


# --- observed = file + runtime ------------------------------------------------------------------


def test_observed_backends_take_servers_from_the_runtime() -> None:
    seen, want = observed()["Backend"], desired()["Backend"]
    app = seen["app"]
    assert app["servers"]["s2"]["state"] == "drain"
    assert app["servers"]["s4"] == {"address": "127.0.0.1", "port": 18003, "weight": 2, "backup": False,
                                    "state": "ready", "check": True, "options": ""}
    legacy = seen["legacy"]
    assert legacy["servers"]["l1"] == {**want["legacy"]["servers"]["l1"], "state": "maint"}
    assert legacy["servers"]["l2"]["backup"] is True
    # everything else is what git wants: the file is untouched
    for name in ("app", "legacy"):
        assert {k: v for k, v in seen[name].items() if k not in ("servers", UNFINISHED)} == \
            {k: v for k, v in want[name].items() if k != "servers"}
    assert legacy["shared"] == IN_SYNC
    # s4 runs but is not in the file: pending work, not "in sync" (issue 21)
    assert app[UNFINISHED] == "haproxy.cfg and the running HAProxy differ: s4 only running"
    assert UNFINISHED not in legacy


def test_observed_frontends_equal_desired_when_nothing_changed() -> None:
    assert observed()["Frontend"] == desired()["Frontend"]


def test_haproxy_not_running_shows_every_proxy_of_our_file_as_pending_work() -> None:
    # what the file holds runs at the next start: seen (so that a pruned one is deleted first),
    # marked unfinished; a file that is not ours shows nothing
    snap = Snapshot(parse_config(fixture("haproxy.cfg")), False)
    seen = observed_states(reconciler().model, snap, NODE)
    assert set(seen["Backend"]) == {"app", "legacy"} and set(seen["Frontend"]) == {"web", "legacy"}
    assert {o[UNFINISHED] for kind in ("Backend", "Frontend") for o in seen[kind].values()} == {NOT_RUNNING}
    assert seen["HAProxy"] == {}
    debian = Snapshot(parse_config("global\n\tlog /dev/log local0\ndefaults\n\tmode http\n"), False)
    assert observed_states(reconciler().model, debian, NODE) == {"HAProxy": {}, "Frontend": {}, "Backend": {}}


def test_haproxy_stopped_by_hand_with_the_file_it_last_ran_shows_nothing_running(tmp_path: Path) -> None:
    # the file is what reconcile wrote and what HAProxy last loaded: nothing half-done, so
    # what is missing is what runs (drift, started again); a file never loaded stays pending
    node = Node("lb1", Runner(dry_run=True), state_dir=tmp_path)
    text = fixture("haproxy.cfg")
    file = parse_config(text)
    (tmp_path / "haproxy").mkdir()
    (tmp_path / "haproxy" / "haproxy.cfg.written").write_text(text)
    stopped = Snapshot(file, False)
    pending = observed_states(reconciler().model, stopped, node)
    assert {o[UNFINISHED] for o in pending["Frontend"].values()} == {NOT_RUNNING}  # never loaded
    (tmp_path / "haproxy" / "loaded.json").write_text(json.dumps(section_digests(file)))
    assert observed_states(reconciler().model, stopped, node) == {"HAProxy": {}, "Frontend": {}, "Backend": {}}
    (tmp_path / "haproxy" / "haproxy.cfg.written").write_text(text + "# edited\n")  # not the file it ran
    assert set(observed_states(reconciler().model, stopped, node)["Frontend"]) == {"web", "legacy"}


def test_a_hand_edit_of_a_proxy_shows_in_its_lines() -> None:
    text = fixture("haproxy.cfg").replace("    hash-type consistent\n", "    hash-type map-based\n")
    seen = observed(text)["Backend"]
    assert seen["legacy"]["lines"] == ["mode tcp", "balance source", "hash-type map-based"]
    assert seen["app"] == {**desired()["Backend"]["app"], "servers": seen["app"]["servers"],  # not blamed
                           UNFINISHED: seen["app"][UNFINISHED]}


def test_an_edit_of_reconciles_own_global_or_defaults_is_reported_on_every_proxy() -> None:
    text = fixture("haproxy.cfg").replace("    retries 3\n", "    retries 5\n")
    seen = observed(text)
    assert seen["Frontend"]["web"]["shared"] == f"{EDITED}: 'retries 3' -> 'retries 5'"
    assert seen["Backend"]["app"]["shared"].startswith(EDITED)
    text = fixture("haproxy.cfg") + "\nlisten stats\n    bind :8404\n"
    assert observed(text)["Frontend"]["web"]["shared"] == IN_SYNC  # a proxy of its own (not ours to judge)


def test_a_proxy_running_but_gone_from_the_file() -> None:
    text = fixture("haproxy.cfg")
    cut = text.index("frontend legacy")
    text = text[:cut] + text[text.index("frontend web"):]
    assert observed(text)["Frontend"]["legacy"]["lines"] == [NOT_IN_FILE]


def test_line_changes_read_like_a_diff() -> None:
    assert line_changes(["a", "b", "c"], ["a", "B", "c", "d"]) == ["'b' -> 'B'", "+'d'"]
    assert line_changes(["a", "b"], ["a"]) == ["-'b'"]


def test_proxies_of_a_file_we_did_not_write_are_marked() -> None:
    text = fixture("haproxy.cfg").split("\n", 1)[1]  # without our header
    assert observed(text)["Frontend"]["web"]["shared"] == FOREIGN


def test_a_file_of_ours_that_the_running_haproxy_has_not_loaded_is_pending_work(tmp_path) -> None:
    """A run killed between installing haproxy.cfg and reloading: the file is what reconcile
    wrote, but its lines are not what HAProxy loaded (issue 21). A hand edit is not."""
    from reconcilers.haproxy.process import section_digests
    from reconcilers.haproxy.state import RELOAD_PENDING

    frontends, backends = parse_stat(fixture("show-stat.csv"))
    text = fixture("haproxy.cfg")
    state = tmp_path / "haproxy"
    state.mkdir()
    before = text.replace("    hash-type consistent\n", "    hash-type map-based\n")  # what HAProxy loaded
    (state / "loaded.json").write_text(__import__("json").dumps(section_digests(parse_config(before))))
    node = Node("lb1", Runner(dry_run=True), tmp_path)

    def seen() -> dict:
        snap = Snapshot(parse_config(text), True, parse_servers_state(fixture("show-servers-state.txt")),
                        frontends, backends)
        return observed_states(reconciler().model, snap, node)["Backend"]

    (state / "haproxy.cfg.written").write_text(text)  # the file is reconcile's own
    assert seen()["legacy"][UNFINISHED] == RELOAD_PENDING
    assert seen()["app"][UNFINISHED] != RELOAD_PENDING  # its lines were loaded (its servers differ)
    (state / "haproxy.cfg.written").write_text(before)  # the file was edited by hand since: drift
    assert UNFINISHED not in seen()["legacy"]
