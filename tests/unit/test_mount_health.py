"""Mount health from observe's states: a mount in the table is not enough, it must answer."""
from __future__ import annotations

import pytest

from reconcilers.base import Desired
from reconcilers.mount.health import mount_health
from reconcilers.mount.reconciler import MountReconciler

WANT = {"path": "/mnt/reports", "state": "mounted", "type": "rclone", "source": "reports:reports"}


@pytest.mark.parametrize("seen, status, reason", [
    ({**WANT, "readOnly": False}, "Healthy", "Mounted"),
    (None, "Degraded", "NotMounted"),
    ({"path": "/mnt/reports", "state": "absent"}, "Degraded", "NotMounted"),
    ({**WANT, "state": "dead"}, "Degraded", "TransportDisconnected"),
    ({**WANT, "state": "not-responding"}, "Degraded", "NotResponding"),
    ({"path": "/mnt/reports", "state": "foreign", "type": "bind", "source": "/srv"}, "Degraded", "Foreign"),
])
def test_a_wanted_mount_is_healthy_only_when_it_is_ours_and_answers(seen, status, reason):
    health = mount_health(WANT, seen)
    assert (health.status, health.reason) == (status, reason), health
    assert "/mnt/reports" in health.message


def test_an_absent_mount_is_healthy_when_nothing_of_ours_is_there_even_if_someone_else_mounted():
    absent = {"path": "/mnt/old", "state": "absent"}
    assert mount_health(absent, None).status == "Healthy"
    assert mount_health(absent, {"path": "/mnt/old", "state": "absent"}).status == "Healthy"
    assert mount_health(absent, {"path": "/mnt/old", "state": "foreign"}).status == "Healthy"
    assert mount_health(absent, {"path": "/mnt/old", "state": "mounted"}).reason == "StillMounted"


def test_the_reconciler_reports_every_desired_mount_and_only_those():
    desired = {"Mount": {"reports": Desired(WANT), "gone": Desired({"path": "/mnt/g", "state": "absent"})}}
    observed = {"Mount": {"reports": {**WANT, "state": "dead"}, "stray": {"path": "/x", "state": "mounted"}}}
    report = MountReconciler.health(MountReconciler.__new__(MountReconciler), None, desired, observed)
    assert {n: h.reason for n, h in report["Mount"].items()} == {"reports": "TransportDisconnected",
                                                                 "gone": "NotMounted"}
    assert MountReconciler.reports_health()
