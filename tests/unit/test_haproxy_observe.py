"""HAProxy observation: parsers on output recorded from haproxy 2.6 in a lab node, and the
normalized Frontend/Backend dicts built from the file plus the runtime."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.haproxy.config import EDITED, IN_SYNC, NOT_IN_FILE, line_changes, parse_config
from reconcilers.haproxy.parse import Snapshot
from reconcilers.haproxy.process import haproxy_errors
from reconcilers.haproxy.render import desired_sections, render_desired
from reconcilers.haproxy.runtime import admin_state, parse_servers_state, parse_show_proc, parse_stat, used_connections
from reconcilers.base import ApplyError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def snapshot(config: str | None = None) -> Snapshot:
    """The recorded lab state: tree/haproxy.yaml applied, then by hand: app/s2 drained,
    legacy/l1 in maintenance, app/s4 added at run time; legacy/dead fails its check."""
    frontends, backends = parse_stat(fixture("show-stat.csv"))
    return Snapshot(parse_config(fixture("haproxy.cfg") if config is None else config), True,
                    parse_servers_state(fixture("show-servers-state.txt")), frontends, backends)


def desired() -> tuple[dict, dict]:
    return desired_sections(load_tree(FIXTURES / "tree"), "lb1")


# --- the runtime API's answers ----------------------------------------------------------------


def test_show_servers_state_gives_address_weight_admin_state_and_checks() -> None:
    servers = parse_servers_state(fixture("show-servers-state.txt"))
    assert sorted(servers) == ["app", "legacy"]
    assert sorted(servers["app"]) == ["s1", "s2", "s3", "s4"]
    s2, l1, dead = servers["app"]["s2"], servers["legacy"]["l1"], servers["legacy"]["dead"]
    assert (s2.address, s2.port, s2.weight, s2.state) == ("127.0.0.1", 18002, 1, "drain")
    assert l1.state == "maint" and l1.check_state & 0x04
    assert (dead.port, dead.weight, dead.state) == (18099, 3, "ready")  # down by its check: not an admin state
    assert servers["app"]["s4"].weight == 2


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
    text = fixture("haproxy.cfg") + "    frobnicate yes\n"
    message = haproxy_errors(fixture("haproxy-c-error.txt"), text)
    assert message == "backend legacy (line 65): unknown keyword 'frobnicate' in 'backend' section"


# --- the generated file ----------------------------------------------------------------------


def test_render_matches_the_file_recorded_from_a_node() -> None:
    frontends, backends = desired()
    assert render_desired(frontends, backends) == fixture("haproxy.cfg")


def test_the_generated_file_is_recognised_and_untouched() -> None:
    file = parse_config(fixture("haproxy.cfg"))
    assert file.generated and not file.shared_edited and not file.unknown_sections
    assert sorted(file.of("frontend")) == ["legacy", "web"]
    assert sorted(file.of("backend")) == ["app", "legacy"]
    assert not any(s.edited for s in file.sections)


def test_a_file_without_our_header_is_foreign() -> None:
    debian = "global\n\tlog /dev/log local0\ndefaults\n\tmode http\n"
    assert parse_config(debian).foreign_proxies == []  # the package default: safe to take over
    mine = debian + "frontend www\n\tbind :80\n"
    assert parse_config(mine).foreign_proxies == ["frontend www"]
    assert parse_config(None).text is None


# --- observed = file + runtime ------------------------------------------------------------------


def test_observed_backends_take_servers_from_the_runtime() -> None:
    observed = snapshot().backends()
    _, backends = desired()
    app = observed["app"]
    assert app["servers"]["s2"]["state"] == "drain"
    assert app["servers"]["s4"] == {"address": "127.0.0.1", "port": 18003, "weight": 2, "backup": False,
                                    "state": "ready", "check": True}
    legacy = observed["legacy"]
    assert legacy["servers"]["l1"] == {**backends["legacy"]["servers"]["l1"], "state": "maint"}
    assert legacy["servers"]["l2"]["backup"] is True
    # everything else is what git wants: the file is untouched
    for name in ("app", "legacy"):
        rest = {k: v for k, v in observed[name].items() if k != "servers"}
        assert rest == {k: v for k, v in backends[name].items() if k != "servers"}
    assert legacy["config"] == IN_SYNC


def test_observed_frontends_equal_desired_when_nothing_changed() -> None:
    frontends, _ = desired()
    assert snapshot().frontends() == frontends


def test_haproxy_not_running_means_every_object_absent() -> None:
    snap = Snapshot(parse_config(fixture("haproxy.cfg")), False)
    assert snap.frontends() == {} and snap.backends() == {}


def test_a_hand_edit_shows_as_fields_and_as_the_edited_line() -> None:
    text = fixture("haproxy.cfg")
    cut = text.index("\nbackend legacy")
    edited = text[:cut] + text[cut:].replace("timeout server 30s", "timeout server 90s")
    snap = snapshot(edited)
    legacy = snap.backends()["legacy"]
    assert legacy["timeouts"]["server"] == "90s"
    assert legacy["config"] == EDITED  # no copy of what we wrote: the field says what changed
    assert snap.backends()["app"]["config"] == IN_SYNC  # other sections are not blamed
    snap.written = parse_config(text)  # with our copy, the edit itself is shown
    assert snap.backends()["legacy"]["config"] == f"{EDITED}: 'timeout server 30s' -> 'timeout server 90s'"


def test_an_unknown_line_or_section_is_an_edit() -> None:
    text = fixture("haproxy.cfg").replace("    default_backend app\n", "    option forwardfor\n    default_backend app\n")
    assert snapshot(text).frontends()["web"]["config"] == f"{EDITED}: +'option forwardfor'"
    text = fixture("haproxy.cfg") + "\nlisten stats\n    bind :8404\n"
    assert snapshot(text).frontends()["web"]["config"] == f"{EDITED}: +section listen stats"


def test_an_edit_of_global_or_defaults_is_reported_on_every_object() -> None:
    text = fixture("haproxy.cfg").replace("    retries 3\n", "    retries 5\n")
    snap = snapshot(text)
    assert snap.frontends()["web"]["config"] == f"{EDITED}: 'retries 3' -> 'retries 5'"
    assert snap.backends()["app"]["config"].startswith(EDITED)


def test_a_proxy_running_but_gone_from_the_file() -> None:
    text = fixture("haproxy.cfg")
    cut = text.index("frontend legacy")
    text = text[:cut] + text[text.index("frontend web"):]
    assert snapshot(text).frontends()["legacy"]["config"] == NOT_IN_FILE


def test_line_changes_read_like_a_diff() -> None:
    assert line_changes(["a", "b", "c"], ["a", "B", "c", "d"]) == ["'b' -> 'B'", "+'d'"]
    assert line_changes(["a", "b"], ["a"]) == ["-'b'"]


def test_with_our_copy_of_the_file_an_edit_is_described_exactly() -> None:
    text = fixture("haproxy.cfg")
    cut = text.index("\nbackend app")
    edited = text[:cut] + text[cut:].replace("server s1 127.0.0.1:18001 weight 1", "server s1 127.0.0.1:18001 weight 7", 1)
    snap = snapshot(edited)
    snap.written = parse_config(text)
    app = snap.backends()["app"]
    assert app["servers"]["s1"]["weight"] == 1  # HAProxy still runs weight 1: the edit is in the file only
    assert app["config"].startswith(f"{EDITED}: 'server s1 127.0.0.1:18001 weight 1 ") and "weight 7" in app["config"]


def test_proxies_of_a_file_we_did_not_write_are_marked() -> None:
    text = fixture("haproxy.cfg").split("\n", 2)[2]  # without our header
    assert snapshot(text).frontends()["web"]["config"] == "not generated by reconcile"
