"""The node policy file: what manifests may make a node do beyond plain configuration."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconcilers.base import ApplyError
from reconcilers.policy import load_policy, policy_path


def test_a_missing_policy_allows_nothing(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "policy.yaml")
    assert not policy.allows("haproxy", "lua")
    assert "(absent)" in policy.refusal("haproxy", "lua", "`lua-load` loads and runs Lua code")


def test_each_tool_has_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("haproxy:\n  allow: [lua, stats-socket-tcp]\nkeepalived:\n  allow: [scripts]\n  scriptUser: k\n")
    policy = load_policy(path)
    assert policy.allows("haproxy", "lua") and policy.allows("keepalived", "scripts")
    assert not policy.allows("haproxy", "scripts") and not policy.allows("lxc", "hooks")
    assert policy.section("keepalived")["scriptUser"] == "k"
    message = policy.refusal("haproxy", "program", "a `program` section makes HAProxy start a program")
    assert message == (f"a `program` section makes HAProxy start a program; refused: this node's policy ({path}) does "
                       f"not allow haproxy capability 'program' (add it to `haproxy: allow:` there if this node may do it)")


@pytest.mark.parametrize("text, message", [
    ("haproxy: [lua", ":1: the node policy is not valid YAML"),
    ("- lua\n", ": the node policy must map tool names to sections"),
    ("haproxy: lua\n", ": haproxy: must be a mapping with `allow: [...]`"),
    ("haproxy:\n  allow: lua\n", ": haproxy.allow: must be a list of capability names"),
])
def test_a_malformed_policy_is_an_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ApplyError) as err:
        load_policy(path)
    assert str(err.value).startswith(f"{path}{message}")


def test_the_policy_file_can_be_named_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RECONCILE_POLICY", raising=False)
    assert policy_path() == Path("/etc/reconcile/policy.yaml")
    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "p.yaml"))
    assert policy_path() == tmp_path / "p.yaml"
