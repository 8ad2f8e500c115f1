"""Bad Frontend/Backend input is refused by the loader with file:line and the field."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {name: web-vip}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  keepalived: {routerId: 51}
"""

BACKEND = """\
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  cluster: web
  servers:
    - {name: app1, address: 198.51.100.11, port: 80}
    - {name: app2, address: 198.51.100.12, port: 80}
"""

FRONTEND = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: web}
spec:
  cluster: web
  bind:
    - {address: 192.0.2.100, port: 80}
  defaultBackend: app
"""


def problems(tmp_path: Path, backend: str = BACKEND, frontend: str = FRONTEND, extra: str = "") -> list[str]:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "backend.yaml").write_text(backend)
    (tmp_path / "lb" / "frontend.yaml").write_text(frontend + extra)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    return [str(p) for p in err.value.problems]


def test_the_base_tree_is_valid(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "lb.yaml").write_text(BACKEND + "---\n" + FRONTEND)
    assert len(load_tree(tmp_path).items) == 4


def test_duplicate_server_names_point_at_the_repeated_line(tmp_path: Path) -> None:
    backend = BACKEND.replace("{name: app2,", "{name: app1,")
    assert problems(tmp_path, backend=backend) == [
        "lb/backend.yaml:8: spec.servers[1].name: duplicate server name 'app1' (first at index 0)"]


def test_unknown_backend_in_a_rule(tmp_path: Path) -> None:
    frontend = FRONTEND + "  rules:\n    - {path: /api, backend: api}\n"
    assert problems(tmp_path, frontend=frontend) == ["lb/frontend.yaml:10: spec.rules[0].backend: unknown Backend 'api'"]


def test_port_out_of_range(tmp_path: Path) -> None:
    backend = BACKEND.replace("address: 198.51.100.12, port: 80}", "address: 198.51.100.12, port: 65536}")
    assert problems(tmp_path, backend=backend)[0] == (
        "lb/backend.yaml:8: spec.servers[1].port: Input should be less than or equal to 65535 (got 65536)")
    (tmp_path / "f").mkdir()
    frontend = FRONTEND.replace("port: 80}", "port: 0}")
    assert problems(tmp_path / "f", frontend=frontend)[0] == (
        "lb/frontend.yaml:7: spec.bind[0].port: Input should be greater than or equal to 1 (got 0)")


def test_a_bind_address_nothing_provides(tmp_path: Path) -> None:
    frontend = FRONTEND.replace("192.0.2.100", "192.0.2.200")
    assert problems(tmp_path, frontend=frontend) == [
        "lb/frontend.yaml:7: spec.bind[0].address: no VirtualIP or node address provides 192.0.2.200 on every node "
        "of this frontend (bind a VirtualIP's address, the node's own, 0.0.0.0, ::, or loopback; or write the bind as a directive to leave it to haproxy -c)"]


def test_a_node_address_is_only_provided_on_that_node(tmp_path: Path) -> None:
    frontend = FRONTEND.replace("192.0.2.100", "192.0.2.11")
    assert problems(tmp_path, frontend=frontend)[0].startswith(
        "lb/frontend.yaml:7: spec.bind[0].address: no VirtualIP or node address provides 192.0.2.11")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "one" / "lb.yaml").write_text(BACKEND + "---\n" + frontend.replace("cluster: web", "node: lb1"))
    load_tree(tmp_path / "one")  # on lb1 alone, its own address is fine


def test_a_backend_must_run_where_its_frontend_runs(tmp_path: Path) -> None:
    backend = BACKEND.replace("cluster: web", "node: lb1")
    assert problems(tmp_path, backend=backend) == [
        "lb/frontend.yaml:8: spec.defaultBackend: backend 'app' is not placed on lb2, where this frontend runs"]


def test_modes_must_agree(tmp_path: Path) -> None:
    backend = BACKEND.replace("  cluster: web\n", "  cluster: web\n  mode: tcp\n  healthCheck: {type: tcp}\n")
    assert problems(tmp_path, backend=backend) == [
        "lb/frontend.yaml:8: spec.defaultBackend: backend 'app' is mode tcp, this frontend is mode http"]


def test_rules_need_http_and_http_checks_need_http(tmp_path: Path) -> None:
    frontend = FRONTEND.replace("  cluster: web\n", "  cluster: web\n  mode: tcp\n") + \
        "  rules:\n    - {path: /api, backend: app}\n"
    found = problems(tmp_path, frontend=frontend)
    assert "lb/frontend.yaml:4: spec: rules, redirect and forwardFor need mode http" in found
    # an HTTP check of a mode tcp backend is fine: the Patroni and kube-apiserver pattern
    backend = BACKEND.replace("  cluster: web\n", "  cluster: web\n  mode: tcp\n  healthCheck: {type: http, port: 8008}\n")
    frontend = FRONTEND.replace("  cluster: web\n", "  cluster: web\n  mode: tcp\n")
    (tmp_path / "b" / "lb").mkdir(parents=True)
    (tmp_path / "b" / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "b" / "lb" / "lb.yaml").write_text(backend + "---\n" + frontend)
    load_tree(tmp_path / "b")


def test_the_same_bind_twice_and_a_wildcard_overlap(tmp_path: Path) -> None:
    frontend = FRONTEND.replace("    - {address: 192.0.2.100, port: 80}\n",
                                "    - {address: 192.0.2.100, port: 80}\n    - {address: 192.0.2.100, port: 80}\n")
    assert problems(tmp_path, frontend=frontend) == [
        "lb/frontend.yaml:8: spec.bind[1]: duplicate bind '192.0.2.100:80' (first at index 0)"]
    other = "---\n" + FRONTEND.replace("name: web}", "name: all}").replace("192.0.2.100", "0.0.0.0")
    (tmp_path / "w").mkdir()
    found = problems(tmp_path / "w", extra=other)
    assert "lb/frontend.yaml:7: spec.bind[0]: port 80 on 192.0.2.100 overlaps Frontend all's bind 0.0.0.0:80" in found


def test_strings_that_reach_the_config_are_checked(tmp_path: Path) -> None:
    frontend = FRONTEND + "  rules:\n    - {host: 'a b.example', backend: app}\n"
    found = problems(tmp_path, frontend=frontend)
    assert found[0].startswith("lb/frontend.yaml:10: spec.rules[0].host: must be a host name")
    backend = BACKEND.replace("  cluster: web\n", "  cluster: web\n  healthCheck: {type: http, path: '/x y'}\n")
    (tmp_path / "p").mkdir()
    assert problems(tmp_path / "p", backend=backend)[0].startswith(
        "lb/backend.yaml:6: spec.healthCheck.path: must be a URL path")


# --- HAProxy's own language: directives, names, references --------------------------------------


def with_directives(*lines: str) -> str:
    return BACKEND + "  directives:\n" + "".join(f"    - {line}\n" for line in lines)


def test_a_directive_smuggling_a_line_or_a_section_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, backend=with_directives('"timeout server 5s\\n  backend evil"'))[:1]
    assert found == ["lb/backend.yaml:10: spec.directives[0]: a directive is one line: no newline, carriage return, "
                     "NUL or other control character (got 'timeout server 5s\\n  backend evil')"]
    (tmp_path / "s").mkdir()
    found = problems(tmp_path / "s", backend=with_directives("frontend evil"))
    assert found[0].startswith("lb/backend.yaml:10: spec.directives[0]: 'frontend' starts a new section")


def test_an_inline_password_is_refused_and_never_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, backend=with_directives("stats auth admin:Hunter2.Secret"))
    assert len(found) == 2 and "unknown Backend 'app'" in found[1] and found[0].startswith("lb/backend.yaml:10: spec.directives[0]: `stats auth` holds a "
                                                   "password written inline: give it by reference")
    assert "Hunter2" not in found[0]


def test_a_reference_line_needs_its_placeholder_once(tmp_path: Path) -> None:
    found = problems(tmp_path, backend=with_directives("{line: 'stats auth admin:pw', secret: {file: /etc/x}}"))
    assert "the line must hold ((secret)) exactly once" in found[0]
    (tmp_path / "f").mkdir()
    found = problems(tmp_path / "f", backend=with_directives("{line: 'x ((file))', secret: {file: /etc/x}}"))
    assert "the line must hold ((secret)) exactly once" in found[0]


def test_names_as_haproxy_allows_them_and_ipv6_addresses(tmp_path: Path) -> None:
    backend = BACKEND.replace("name: app}", "name: be_http-in.v2:a}").replace(
        "198.51.100.12, port: 80}", "'2001:db8::12', port: 80}\n    - {name: Web.1, host: web1.corp.example.test, port: 80}")
    frontend = FRONTEND.replace("defaultBackend: app", "defaultBackend: be_http-in.v2:a")
    (tmp_path / "lb").mkdir(parents=True)
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "lb" / "lb.yaml").write_text(backend + "---\n" + frontend)
    tree = load_tree(tmp_path)
    assert tree.get("Backend", "be_http-in.v2:a").spec.servers[1].address == "2001:db8::12"
    bad = BACKEND.replace("name: app}", "name: 'app/x'}")
    (tmp_path / "n").mkdir()
    assert "letters, digits and _ . : -" in problems(tmp_path / "n", backend=bad)[0]


def test_a_defaults_section_a_proxy_names_must_exist(tmp_path: Path) -> None:
    haproxy = ("---\napiVersion: reconcile/v1\nkind: HAProxy\nmetadata: {name: edge}\nspec:\n  cluster: web\n"
               "  defaults: [{name: web, directives: [mode http]}]\n")
    backend = BACKEND.replace("  cluster: web\n", "  cluster: web\n  defaults: tcp\n")
    found = problems(tmp_path, backend=backend, extra=haproxy)
    assert found == ["lb/backend.yaml:6: spec.defaults: no HAProxy manifest on lb1, lb2 has a defaults section named 'tcp'"]


def test_bind_and_stats_need_a_listen_section(tmp_path: Path) -> None:
    backend = BACKEND.replace("  cluster: web\n", "  cluster: web\n  bind: [{address: 127.0.0.1, port: 8080}]\n")
    assert problems(tmp_path, backend=backend)[0] == \
        "lb/backend.yaml:4: spec: bind and stats need section: listen (a backend does not accept connections)"


def test_one_haproxy_manifest_per_node(tmp_path: Path) -> None:
    one = "---\napiVersion: reconcile/v1\nkind: HAProxy\nmetadata: {name: a}\nspec:\n  cluster: web\n"
    found = problems(tmp_path, extra=one + one.replace("name: a}", "name: b}"))
    assert found == ["lb/frontend.yaml:18: metadata.name: conflicts with HAProxy 'a' at lb/frontend.yaml:12: both "
                     "claim haproxy process"]
