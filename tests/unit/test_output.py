"""How a run reads: element-wise list changes, masked secrets, --quiet, the live line."""
from __future__ import annotations

import io
import re

from controller.output import Progress, render_run
from controller.plan import MASKED, create_fields, field_changes
from reconcilers.base import Change


def run(*objects: dict, **more) -> dict:
    return {"node": "lb1", "mode": "dry-run", "revision": "0123456789abcdef0123-dirty", "repo": "/r",
            "objects": list(objects), "counts": {}, "result": "pending", "seconds": 0.1,
            "sync": {"status": "Reconciling", "reason": "1 Reconciling"}, "health": {"status": None,
                                                                                 "reason": "NotChecked"}, **more}


def test_a_list_change_shows_each_element_removed_and_added_in_full():
    long = "192.0.2.13-with-a-very-long-name-that-would-have-been-cut-at-seventy-characters"
    change = Change("VirtualIP", "v", "update", {"unicastPeers": ["192.0.2.12", long]},
                    {"unicastPeers": ["192.0.2.12", "192.0.2.14"]}, [{"op": "replace", "path": "/unicastPeers/1",
                                                                       "value": long}])
    fields = [{"field": f, "observed": a, "desired": b} for f, a, b in field_changes(change)]
    text = render_run(run({"kind": "VirtualIP", "name": "v", "status": "pending", "action": "update",
                           "fields": fields, "notes": []}))
    assert "      unicastPeers:\n        - 192.0.2.14\n        + " + long in text
    assert "192.0.2.12" not in text  # what stays is not repeated


def test_a_create_shows_the_values_it_sets_and_masks_what_looks_secret():
    fields = dict((f, v) for f, _, v in create_fields({"address": "192.0.2.100/24", "password": "hunter2",
                                                        "authkey": "<secret: in sync>"}))
    assert fields == {"address": "192.0.2.100/24", "password": MASKED, "authkey": "<secret: in sync>"}


def test_the_revision_keeps_dirty():
    assert "revision 0123456789ab-dirty" in render_run(run())


def test_quiet_shows_only_what_needs_a_look():
    ok = {"kind": "Backend", "name": "fine", "status": "in-sync", "sync": {"status": "Ready"},
          "health": {"status": "Healthy", "reason": "ServersUp", "message": ""}, "fields": [], "notes": ["x"]}
    sick = dict(ok, name="sick", health={"status": "Degraded", "reason": "ServersDown", "message": "s1 DOWN"})
    text = render_run(run(ok, sick), quiet=True)
    assert "Backend sick" in text and "Backend fine" not in text and "x" not in text.split("\n")[1:-2]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_object_being_applied_is_a_live_line():
    class O:
        kind, name, status, action, shown_as, error, notes = "Backend", "app", "pending", "create", "", None, []
        label = "Backend app"

    out = Terminal()
    progress = Progress(out, "never")
    progress("applying", [O()])
    assert out.getvalue() == "\r\x1b[K  … applying Backend app"
    O.status = "changed"
    progress("done", [O()])
    assert re.search(r"\r\x1b\[K  \+ Backend app \(applied: create\) [0-9]+\.[0-9]{2}s\n$", out.getvalue())
