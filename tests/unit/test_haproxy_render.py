"""Typed HAProxy fields rendered to directives; secrets and files by reference in the
plan, the file and the observed state; validate() refusing by the node's policy and by
missing references with `file:line: field`, before any `haproxy -c`."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.base import Change, Node, Runner
from reconcilers.haproxy.config import parse_config
from reconcilers.haproxy.parse import Snapshot
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.haproxy.runtime import parse_servers_state, parse_stat
from reconcilers.haproxy.state import SECRET_DIFFERS, observed_states

CERT = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy" / "tls" / "www.example.test.pem"  # test-only key
NODE = Node("lb1", Runner(dry_run=True))


def write(tmp_path: Path, text: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "lb.yaml").write_text(textwrap.dedent(text))
    return repo


def reconciler(repo: Path) -> HAProxyReconciler:
    rec = HAProxyReconciler()
    rec.desired(load_tree(repo), NODE)
    return rec


def config(rec: HAProxyReconciler) -> str:
    return rec.render(NODE)["/etc/haproxy/haproxy.cfg"]


def edge(tmp_path: Path, password: Path, cert: Path = CERT) -> Path:
    return write(tmp_path, f"""\
        apiVersion: reconcile/v1
        kind: HAProxy
        metadata: {{name: edge}}
        spec:
          node: lb1
          logging: {{to: stderr, facility: local2, level: notice}}
          global: [maxconn 100]
          defaults:
            - {{name: web, directives: [mode http, timeout client 5s]}}
            - {{name: tcp, defaults: web, directives: [mode tcp]}}
          maps:
            hosts: {{a.example.test: be_a}}
        ---
        apiVersion: reconcile/v1
        kind: Frontend
        metadata: {{name: www}}
        spec:
          node: lb1
          defaults: web
          bind:
            - {{address: 192.0.2.100, port: 443, tls: {{certificate: {{file: {cert}}}, alpn: [h2, http/1.1]}}}}
            - {{address: "::", port: 443, options: [v6only]}}
          forwardFor: true
          redirect: {{code: 308}}
          stats:
            uri: /stats
            auth: [{{user: ops, password: {{file: {password}}}}}]
          logFormat: http
          defaultBackend: be_a
        ---
        apiVersion: reconcile/v1
        kind: Backend
        metadata: {{name: be_a}}
        spec:
          node: lb1
          defaults: web
          balance: url_param userid
          healthCheck: {{type: http, method: HEAD, path: /health, host: a.example.test, port: 8008, interval: 1s}}
          servers:
            - {{name: a1, address: "2001:db8::21", port: 80, maxconn: 50}}
            - {{name: a2, host: a2.corp.example.test, port: 80, resolvers: dc, backup: true}}
            - {{name: a3, address: 192.0.2.23, port: 443, tls: {{verify: none, sni: a3.example.test}}, state: maint}}
        ---
        apiVersion: reconcile/v1
        kind: Backend
        metadata: {{name: db}}
        spec:
          node: lb1
          defaults: tcp
          healthCheck: {{type: pgsql, user: haproxy, agentPort: 9999}}
          servers: [{{name: p1, address: 192.0.2.31, port: 5432}}]
        ---
        apiVersion: reconcile/v1
        kind: Cluster
        metadata: {{name: web}}
        spec:
          stack: none
          nodes: [{{name: lb1, id: 1, address: 192.0.2.11/24}}]
        ---
        apiVersion: reconcile/v1
        kind: VirtualIP
        metadata: {{name: web-vip}}
        spec:
          cluster: web
          manager: keepalived
          address: 192.0.2.100/24
          keepalived: {{routerId: 51}}
        """)


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "stats.password"
    path.write_text("pa ss#1\n")
    return path


def test_typed_fields_render_to_directives(tmp_path: Path, password: Path) -> None:
    text = config(reconciler(edge(tmp_path, password)))
    assert "\nglobal\n    # reconcile: HAProxy edge\n    maxconn 100\n    log stderr format raw local2 notice\n" in text
    assert "\ndefaults web\n    mode http\n    timeout client 5s\n    load-server-state-from-file global  # reconcile\n" in text
    assert "\ndefaults tcp from web\n    mode tcp\n" in text
    assert "\nfrontend www from web\n" in text
    assert "    bind 192.0.2.100:443 ssl crt /etc/haproxy/reconcile/frontend-www/www.example.test.pem " \
           "alpn h2,http/1.1 transparent\n" in text
    assert "    bind [::]:443 v6only\n" in text
    assert "    option idle-close-on-response  # reconcile\n" in text  # mode http from its defaults
    assert "    option forwardfor\n    stats enable\n    stats uri /stats\n" in text
    assert "    # reconcile: the next line holds a secret\n    stats auth ops:'pa ss#1'\n" in text
    assert "    option httplog\n" in text and "http-request redirect scheme https code 308 if !{ ssl_fc }" in text
    assert "    balance url_param userid\n    option httpchk HEAD /health\n    http-check send hdr host a.example.test\n" \
           "    http-check expect status 200\n" in text
    assert "    server a1 [2001:db8::21]:80 weight 1 maxconn 50 check inter 1s fall 3 rise 2 port 8008\n" in text
    assert "    server a2 a2.corp.example.test:80 weight 1 backup check inter 1s fall 3 rise 2 port 8008 " \
           "resolvers dc init-addr last,libc,none\n" in text
    assert "ssl verify none sni 'str(a3.example.test)' disabled\n" in text
    assert "\nbackend db from tcp\n    option pgsql-check user haproxy\n" in text
    assert "server p1 192.0.2.31:5432 weight 1 check inter 2s fall 3 rise 2 agent-check agent-port 9999 " \
           "agent-inter 2s\n" in text


def test_the_plan_shows_references_never_values(tmp_path: Path, password: Path) -> None:
    rec = reconciler(edge(tmp_path, password))
    desired = rec.desired(load_tree(tmp_path / "repo"), NODE)
    www = desired["Frontend"]["www"].state
    assert f"stats auth ops:<secret file:{password}>" in www["lines"]
    assert www["files"] == {"/etc/haproxy/reconcile/frontend-www/www.example.test.pem": f"file:{CERT}"}
    assert "pa ss" not in repr(desired)
    assert desired["HAProxy"]["edge"].state["maps"] == {"/etc/haproxy/maps/hosts.map": {"a.example.test": "be_a"}}
    notes = rec.explain(Change("Frontend", "www", "create", www, None), NODE)
    assert notes[0] == (f"certificate /etc/haproxy/reconcile/frontend-www/www.example.test.pem from file:{CERT}: "
                        "subject CN=www.example.test, names www.example.test, example.test, expires 2126-11-03 "
                        f"({notes[0].split('(')[1].split(')')[0]}), SHA-1 88F45ADED38F58D6E56CB51FD33F1B5C7854349D")
    assert "PRIVATE" not in "".join(notes)


def test_observe_shows_a_secret_line_as_its_reference_and_a_changed_one_as_changed(tmp_path: Path,
                                                                                   password: Path) -> None:
    rec = reconciler(edge(tmp_path, password))
    text = config(rec)
    stat = "# pxname,svname,mode,algo\nwww,FRONTEND,http,\nbe_a,BACKEND,http,roundrobin\n"

    def observed(text: str) -> dict:
        snap = Snapshot(parse_config(text), True, parse_servers_state(""), *parse_stat(stat))
        return observed_states(rec.model, snap, NODE)["Frontend"]["www"]

    assert f"stats auth ops:<secret file:{password}>" in observed(text)["lines"]
    password.write_text("rotated\n")  # the secret changed at its source: the file holds the old one
    lines = observed(text)["lines"]
    assert SECRET_DIFFERS in lines and not any("pa ss" in line for line in lines)
    by_hand = text.replace("    # reconcile: the next line holds a secret\n", "")
    assert "stats auth <redacted>" in observed(by_hand)["lines"]


def test_validate_refuses_a_directive_the_node_policy_does_not_allow(tmp_path: Path, password: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "policy.yaml"))
    repo = edge(tmp_path, password)
    text = (repo / "lb.yaml").read_text().replace("global: [maxconn 100]",
                                                  "global: [maxconn 100, lua-load /etc/haproxy/x.lua, 'setenv A b']")
    (repo / "lb.yaml").write_text(text)
    problems = reconciler(repo).validate(NODE)
    assert problems == [
        f"lb.yaml:7: spec.global[1]: `lua-load /etc/haproxy/x.lua` loads and runs Lua code; refused: this node's policy "
        f"({tmp_path}/policy.yaml (absent)) does not allow haproxy capability 'lua' (add it to `haproxy: allow:` there "
        f"if this node may do it)",
        f"lb.yaml:7: spec.global[2]: `setenv A` changes the environment HAProxy and its children run with; refused: "
        f"this node's policy ({tmp_path}/policy.yaml (absent)) does not allow haproxy capability 'environment' (add it "
        f"to `haproxy: allow:` there if this node may do it)"]
    (tmp_path / "policy.yaml").write_text("haproxy:\n  allow: [lua]\n")
    left = [str(p) for p in reconciler(repo).validate(NODE) if "spec.global" in str(p)]
    assert len(left) == 1 and left[0].startswith("lb.yaml:7: spec.global[2]: `setenv A`")


def test_validate_refuses_references_that_do_not_exist_on_the_node(tmp_path: Path, password: Path) -> None:
    repo = edge(tmp_path, password, cert=tmp_path / "missing.pem")
    password.unlink()
    assert reconciler(repo).validate(NODE) == [
        f"lb.yaml:21: spec.bind[0].tls.certificate: {tmp_path}/missing.pem does not exist on node lb1",
        f"lb.yaml:27: spec.stats.auth[0].password: {password} does not exist on node lb1"]


def test_for_another_node_its_policy_and_its_files_are_skipped_not_refused(tmp_path: Path, password: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate` in CI checks lb1 on another machine: lb1's policy file and the files its
    secrets come from are lb1's own, so what they decide is said to be skipped."""
    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "policy.yaml"))  # absent here: would refuse lua
    repo = edge(tmp_path, password, cert=tmp_path / "missing.pem")
    text = (repo / "lb.yaml").read_text().replace("global: [maxconn 100]", "global: [maxconn 100, lua-load /x.lua]")
    (repo / "lb.yaml").write_text(text)
    elsewhere = Node("lb1", Runner(dry_run=True), local=False)
    found = reconciler(repo).validate(elsewhere)
    assert [type(p).__name__ for p in found] == ["Skipped", "Skipped"]
    assert found[0] == ("lb.yaml:7: spec.global[1]: `lua-load /x.lua` loads and runs Lua code: allowed only by lb1's "
                        "own node policy, not checked on this machine")
    assert found[1] == (f"haproxy -c not run for lb1: a file it names is lb1's and not on this machine: lb.yaml:21: "
                        f"spec.bind[0].tls.certificate: {tmp_path}/missing.pem does not exist on node lb1")
    assert reconciler(repo).validate(NODE)[0].endswith("does not allow haproxy capability 'lua' (add it to `haproxy: "
                                                       "allow:` there if this node may do it)")
