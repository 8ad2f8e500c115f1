"""Secret parameters: stored in cibsecret's layout on each node (never in the CIB, argv,
the plan), observed as tokens, and checked for what Pacemaker can read back."""
from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.base import ApplyError, Node, Runner
from reconcilers.pacemaker import secrets
from reconcilers.pacemaker.candidate import render_configuration
from reconcilers.pacemaker.resources import ClusterResourceReconciler
from schemas.common import SecretRef

TREE = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
  crypto: none
  stonithEnabled: true
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: fence-lb1
spec:
  cluster: web
  agent: stonith:fence_ipmilan
  params: {{ip: 192.0.2.201, username: admin, password: {{file: {secret}}}}}
"""


def test_a_secret_is_stored_as_cibsecret_does_root_only(tmp_path):
    node = Node("lb1", Runner())
    root = tmp_path / "secrets"
    assert secrets.write("fence-lb1", "password", "s3cret pass", node, root)
    value = root / "fence-lb1" / "password"
    assert value.read_text() == "s3cret pass\n"
    assert (root / "fence-lb1" / "password.sign").read_text() == hashlib.md5(b"s3cret pass").hexdigest() + "\n"
    assert stat.S_IMODE(value.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "fence-lb1").stat().st_mode) == 0o700
    assert not secrets.write("fence-lb1", "password", "s3cret pass", node, root)  # already there
    assert secrets.stored_params("fence-lb1", root) == ["password"]
    secrets.remove("fence-lb1", "password", node, root)
    assert not (root / "fence-lb1").exists()


def test_this_node_s_secret_is_observed_as_a_token_only(tmp_path):
    node = Node("lb1", Runner(dry_run=True))
    root = tmp_path / "secrets"
    source = tmp_path / "fence.pw"
    source.write_text("s3cret\n")
    ref = SecretRef(file=str(source))
    assert secrets.observe("f", "passwd", "lrm://", ref, node, root) == secrets.MISSING
    secrets.write("f", "passwd", "s3cret", Node("lb1", Runner()), root)
    assert secrets.observe("f", "passwd", "lrm://", ref, node, root) == secrets.IN_SYNC
    source.write_text("rotated\n")
    assert secrets.observe("f", "passwd", "lrm://", ref, node, root) == "<secret: changed>"
    assert secrets.observe("f", "passwd", "calvin", ref, node, root) == "<secret: inline in the CIB>"
    # a value read for a comparison is redacted from anything the runner logs or raises
    assert node.runner.redact("rotated and s3cret") == "<redacted> and <redacted>"


@pytest.mark.parametrize("value, why", [("a\nb", "one line"), ("trailing ", "end in a blank"), ("x" * 255, "254"),
                                        ("", "empty")])
def test_a_secret_pacemaker_could_not_read_back_is_refused_before_anything_is_written(tmp_path, value, why):
    source = tmp_path / "pw"
    source.write_text(value + "\n" if value and not value.endswith(" ") else value)
    with pytest.raises(ApplyError, match=why):
        secrets.checked_value(SecretRef(file=str(source)), Node("lb1", Runner()), "f", "passwd")


def test_the_cib_plan_and_render_hold_only_lrm_and_the_token(tmp_path):
    source = tmp_path / "fence.pw"
    source.write_text("hunter2-very-secret\n")
    (tmp_path / "tree.yaml").write_text(TREE.format(secret=source))
    rec = ClusterResourceReconciler()
    out = rec.desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True)))
    assert out["ClusterResource"]["fence-lb1"].state["params"]["password"] == "<secret: in sync>"
    conf = render_configuration(rec._config, [(n, rec._states[n]) for n in rec._order], rec._node_ids, rec._value)
    from xml.etree import ElementTree as ET

    text = ET.tostring(conf, encoding="unicode")
    assert 'name="password" value="lrm://"' in text and "hunter2" not in text
    assert rec._secrets == {"fence-lb1": {"password": SecretRef(file=str(source))}}
