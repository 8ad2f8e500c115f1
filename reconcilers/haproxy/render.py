"""From manifests to what HAProxy reads: the normalized state of each Frontend and Backend
(what `desired` returns and the plan diffs), and the section lines it renders to."""
from __future__ import annotations

import ipaddress
from typing import Any

from reconcilers.haproxy.config import IN_SYNC, Sections, compose, haproxy_word, section

# --- the normalized shapes (what `desired` and `observe` both return) ----------------------


def frontend_state(spec: Any) -> dict[str, Any]:
    """A Frontend spec as the normalized dict the plan diffs."""
    state: dict[str, Any] = {
        "mode": spec.mode,
        "bind": [f"{b.address}:{b.port}" for b in spec.bind],
        "defaultBackend": spec.defaultBackend,
        "rules": [{k: v for k, v in (("host", r.host), ("path", r.path), ("backend", r.backend)) if v is not None}
                  for r in spec.rules],
        "timeouts": {"client": spec.timeouts.client},
        "config": IN_SYNC,
    }
    if spec.mode == "http":
        state["timeouts"]["httpRequest"] = spec.timeouts.httpRequest
    if spec.maxconn is not None:
        state["maxconn"] = spec.maxconn
    return state


def backend_state(spec: Any) -> dict[str, Any]:
    """A Backend spec as the normalized dict the plan diffs: servers keyed by name."""
    hc = spec.healthCheck
    check: dict[str, Any] = {"type": hc.type}
    if hc.type != "none":
        check.update(interval=hc.interval, fall=hc.fall, rise=hc.rise)
    if hc.type == "http":
        check.update(path=hc.path, expectStatus=hc.expectStatus)
    servers = {}
    for s in spec.servers:
        server: dict[str, Any] = {"address": s.address, "port": s.port, "weight": s.weight, "backup": s.backup,
                                  "state": s.state, "check": hc.type != "none"}
        if s.maxconn is not None:
            server["maxconn"] = s.maxconn
        servers[s.name] = server
    return {
        "mode": spec.mode,
        "balance": spec.balance,
        "healthCheck": check,
        "timeouts": {"connect": spec.timeouts.connect, "server": spec.timeouts.server, "queue": spec.timeouts.queue},
        "servers": servers,
        "config": IN_SYNC,
    }


def backend_ignore(spec: Any) -> tuple[str, ...]:
    """JSON pointers an operator may change at run time for this backend (`spec.ignore`)."""
    return tuple(f"/servers/*/{name}" for name in spec.ignore)


def desired_sections(tree: Any, node: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(frontends, backends): the normalized states of every HAProxy object on `node`."""
    frontends = {m.metadata.name: frontend_state(m.spec) for m in tree.on_node("Frontend", node)}
    backends = {m.metadata.name: backend_state(m.spec) for m in tree.on_node("Backend", node)}
    return frontends, backends


# --- section lines -------------------------------------------------------------------------


def _bind_options(address: str) -> str:
    # A bind to a floating address must work on the node that does not hold it now
    # (keepalived BACKUP, Pacemaker elsewhere): IP_TRANSPARENT on our own listening
    # socket allows that, without the node-wide ip_nonlocal_bind sysctl.
    ip = ipaddress.IPv4Address(address)
    return "" if ip.is_unspecified or ip.is_loopback else " transparent"


def _host_acl(host: str) -> str:
    fetch = "req.hdr(host),field(1,:)"  # the Host header without a port
    if host.startswith("*."):
        return f"{fetch} -m end -i {haproxy_word(host[1:])}"
    return f"{fetch} -m str -i {haproxy_word(host)}"


def _path_acls(path: str) -> list[str]:
    # A path prefix matches whole segments: /api matches /api and /api/x, not /apix.
    if path.endswith("/"):
        return [f"path_beg {haproxy_word(path)}"]
    return [f"path {haproxy_word(path)}", f"path_beg {haproxy_word(path + '/')}"]


def render_frontend(name: str, state: dict[str, Any]) -> list[str]:
    w = haproxy_word  # every value in a line goes through it
    body = [f"mode {w(state['mode'])}"]
    if state["mode"] == "http":
        # A reload must not break idle keep-alive connections: the old worker answers
        # their next request with "Connection: close" instead of closing them under the
        # client's feet.
        body.append("option idle-close-on-response")
    for bind in state["bind"]:
        address = bind.rsplit(":", 1)[0]
        body.append(f"bind {w(bind)}{_bind_options(address)}")
    if "maxconn" in state:
        body.append(f"maxconn {w(state['maxconn'])}")
    body.append(f"timeout client {w(state['timeouts']['client'])}")
    if "httpRequest" in state["timeouts"]:
        body.append(f"timeout http-request {w(state['timeouts']['httpRequest'])}")
    for i, rule in enumerate(state["rules"]):
        conditions = []
        if "host" in rule:
            body.append(f"acl rule{i}_host {_host_acl(rule['host'])}")
            conditions.append(f"rule{i}_host")
        if "path" in rule:
            body += [f"acl rule{i}_path {acl}" for acl in _path_acls(rule["path"])]
            conditions.append(f"rule{i}_path")
        body.append(f"use_backend {w(rule['backend'])} if {' '.join(conditions)}")
    body.append(f"default_backend {w(state['defaultBackend'])}")
    return section(f"frontend {w(name)}", f"Frontend {w(name)}", body)


def server_args(server: dict[str, Any], check: dict[str, Any]) -> list[str]:
    """The arguments after `server NAME` in the file, and after `add server BE/NAME` on
    the runtime API (dynamic servers take no `default-server` settings)."""
    w = haproxy_word
    args = [w(f"{server['address']}:{server['port']}"), "weight", w(server["weight"])]
    if server["backup"]:
        args.append("backup")
    if "maxconn" in server:
        args += ["maxconn", w(server["maxconn"])]
    if server["check"] and check["type"] != "none":
        args += ["check", "inter", w(check["interval"]), "fall", w(check["fall"]), "rise", w(check["rise"])]
    return args


def render_backend(name: str, state: dict[str, Any]) -> list[str]:
    w = haproxy_word
    check = state["healthCheck"]
    body = [f"mode {w(state['mode'])}", f"balance {w(state['balance'])}"]
    if state["balance"] == "source":
        body.append("hash-type consistent")  # a dynamic algorithm: servers can be added at run time
    if check["type"] == "http":
        body.append(f"option httpchk GET {w(check['path'])}")
        body.append(f"http-check expect status {w(check['expectStatus'])}")
    if check["type"] != "none":
        body.append(f"default-server inter {w(check['interval'])} fall {w(check['fall'])} rise {w(check['rise'])}")
    t = state["timeouts"]
    body += [f"timeout connect {w(t['connect'])}", f"timeout server {w(t['server'])}",
             f"timeout queue {w(t['queue'])}"]
    for server_name, server in sorted(state["servers"].items()):
        line = f"server {w(server_name)} {' '.join(server_args(server, check))}"
        if server["state"] == "maint":
            line += " disabled"
        body.append(line)
    return section(f"backend {w(name)}", f"Backend {w(name)}", body)


RENDER = {"Frontend": render_frontend, "Backend": render_backend}


def render_object(kind: str, name: str, state: dict[str, Any]) -> list[str]:
    return RENDER[kind](name, state)


def render_desired(frontends: dict[str, dict], backends: dict[str, dict]) -> str:
    """The whole file for these desired objects."""
    sections: Sections = {("frontend", n): render_frontend(n, s) for n, s in frontends.items()}
    sections.update({("backend", n): render_backend(n, s) for n, s in backends.items()})
    return compose(sections)
