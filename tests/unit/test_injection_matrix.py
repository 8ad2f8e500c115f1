"""Injection matrix: every string field of every kind × hostile payloads, each either refused
by validation or rendered harmlessly into the files and argv that kind produces.

The string fields are found by walking the pydantic models (schemas.KINDS), so a field added
later is in the matrix at once: the test fails until BASE has a manifest that sets it. Each
case puts one payload into one field of a valid tree and then
- validates the document and the whole tree as the loader does (schema, then tree checks);
- if that accepts it, renders what node lb1 would get, without applying anything:
  haproxy.cfg, keepalived.conf, corosync.conf, the CIB elements (resources, constraints,
  cluster properties), each container's LXC config block, lxc-create argv and file paths,
  sssd.conf, the PAM block, the sudoers rules and the adcli argv; each mount's argv, units,
  fstab line, rclone config, known_hosts and cifs credentials. A renderer's own quoting
  function may still refuse the value (UnsafeValue): that is a refusal too;
- parses what was rendered back with the file format's own rules (this module's small
  parsers: HAProxy's quoting, keepalived's blocks, Corosync's sections, LXC's key = value,
  INI, PAM's line, sudoers' escapes, XML) and checks that its shape is the base tree's: the
  same lines with the same keys, words and elements. A value that ended a line, opened a
  block or section, started a key or split into two words would change the shape.
"""
from __future__ import annotations

import copy
import posixpath
import re
import shlex
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import BaseModel

from controller.loader import Loaded, Source, Tree, check_tree, parse_document
from reconcilers import keepalived
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.base import Node, Runner, UnsafeValue
from reconcilers.cluster import corosync_settings, render_corosync_conf
from reconcilers.cluster_resource import ClusterResourceReconciler, render_constraints, render_unit
from reconcilers.lxc.config import CgroupLayout, render_block
from reconcilers.lxc.reconciler import ContainerReconciler
from reconcilers.lxc.model import create_argv, render_settings, stop_seconds
from reconcilers.domain import files as domain_files
from reconcilers.domain.adcli import join_argv
from reconcilers.domain.files import Paths
from reconcilers.domain.pam import pam_with_block
from reconcilers.mount import MountReconciler
from reconcilers.mount.apply import units_for
from reconcilers.mount.credentials import host_keys, plain_values
from reconcilers.mount.model import Paths as MountPaths, entry as mount_entry, rclone_options
from reconcilers.mount.render import cifs_credentials, fstab_line, known_hosts, mount_argv, rclone_conf
from reconcilers.pacemaker import set_properties
from reconcilers.virtual_ip import desired_instances
from schemas import KINDS
from schemas.common import MultiLineText, unsafe_character

NODE = "lb1"


def manifest(kind: str, name: str, spec: dict) -> dict:
    metadata = {"name": name, "labels": {"tier": "web"}, "drift": "correct"}
    return {"apiVersion": "reconcile/v1", "kind": kind, "metadata": metadata, "spec": spec}


# One valid tree in which every string field of every kind is set somewhere.
BASE = [
    manifest("Cluster", "web", {
        "nodes": [{"name": "lb1", "id": 1, "address": "192.0.2.11/24"},
                  {"name": "lb2", "id": 2, "address": "192.0.2.12/24"}],
        "stack": "pacemaker", "transport": "knet", "authkey": {"env": "COROSYNC_AUTHKEY"}, "token": "1000ms",
        "quorum": {"twoNode": True, "waitForAll": True}, "stonithEnabled": False,
        "properties": {"no-quorum-policy": "ignore"}}),
    manifest("ClusterResource", "db", {
        "cluster": "web", "agent": "ocf:heartbeat:Dummy", "params": {"state": "/run/db.state"},
        "operations": [{"name": "monitor", "interval": "10s", "timeout": "20s"}],
        "meta": {"resource-stickiness": "100"}, "location": [{"node": "lb1", "score": "INFINITY"}],
        "colocation": [{"with": "dbvip", "score": "INFINITY"}], "startAfter": ["dbvip"]}),
    manifest("ClusterResource", "dbgroup", {"cluster": "web", "group": ["db2"]}),
    manifest("ClusterResource", "db2", {"cluster": "web", "agent": "systemd:nginx"}),
    manifest("VirtualIP", "web-vip", {
        "cluster": "web", "manager": "keepalived", "address": "192.0.2.100/24", "interface": "eth0",
        "keepalived": {"routerId": 51, "priority": {"lb1": 150}, "advertInterval": 0.25, "preempt": True,
                       "preemptDelay": 5, "trackHaproxy": True, "group": "web-group"}}),
    manifest("VirtualIP", "dbvip", {
        "cluster": "web", "manager": "pacemaker", "address": "192.0.2.110/24",
        "pacemaker": {"monitorInterval": "10s", "preferredNode": "lb1"}}),
    manifest("HAProxy", "edge", {
        "cluster": "web", "maxconn": 4000,
        "global": ["ssl-default-bind-options ssl-min-ver TLSv1.2",
                   {"line": "ssl-dh-param-file ((file))", "file": {"file": "/etc/reconcile/secrets/dh.pem"}}],
        "defaults": [{"name": "web", "directives": ["mode http"]},
                     {"name": "tcp", "defaults": "web", "directives": ["mode tcp"]}],
        "sections": [{"type": "userlist", "name": "admins",
                      "directives": [{"line": "user alice password ((secret))",
                                      "secret": {"file": "/etc/reconcile/secrets/alice"}}]}],
        "logging": {"to": "ring", "facility": "local0", "level": "info"},
        "maps": {"hosts": {"a.example.test": "app"}}, "acls": {"allowed": ["192.0.2.0/24"]}}),
    manifest("Backend", "app", {
        "cluster": "web", "defaults": "web", "mode": "http", "balance": "roundrobin",
        "servers": [{"name": "app1", "address": "198.51.100.11", "port": 80, "weight": 2, "maxconn": 100,
                     "state": "ready", "options": ["send-proxy-v2"], "tls": {"verify": "none", "sni": "app.test"}},
                    {"name": "app2", "host": "app2.corp.example.test", "port": 80, "resolvers": "dc"}],
        "healthCheck": {"type": "http", "method": "GET", "path": "/health", "host": "app.test", "interval": "2s"},
        "timeouts": {"connect": "5s", "server": "30s", "queue": "30s", "check": "2s", "tunnel": "1h"},
        "directives": ["option redispatch"], "ignore": ["state"]}),
    manifest("Backend", "api", {"cluster": "web", "servers": [{"name": "api1", "address": "198.51.100.21", "port": 80}]}),
    manifest("Backend", "solo", {"node": "lb1", "mode": "tcp", "defaults": "tcp", "section": "listen",
                                 "bind": [{"address": "127.0.0.1", "port": 5432}],
                                 "healthCheck": {"type": "pgsql", "user": "haproxy"},
                                 "stats": {"uri": "/stats", "realm": "ops", "refresh": "10s",
                                           "auth": [{"user": "ops", "password": {"file": "/etc/reconcile/secrets/s"}}]}}),
    manifest("VirtualIP", "solo-vip", {"node": "lb1", "manager": "keepalived", "address": "192.0.2.120/24",
                                       "keepalived": {"routerId": 52}}),
    manifest("Frontend", "web", {
        "cluster": "web", "defaults": "web",
        "bind": [{"address": "192.0.2.100", "port": 80, "options": ["accept-proxy"],
                  "tls": {"certificate": {"file": "/etc/reconcile/secrets/web.pem"}, "alpn": ["h2", "http/1.1"],
                          "minVersion": "TLSv1.2"}}],
        "mode": "http", "defaultBackend": "app",
        "rules": [{"host": "www.example.test", "path": "/api", "backend": "api"}], "maxconn": 1000,
        "timeouts": {"client": "30s", "httpRequest": "10s", "httpKeepAlive": "5s"},
        "redirect": {"scheme": "https", "code": 301}, "logFormat": "http",
        "directives": ["http-request set-header X-Via lb",
                       {"line": "http-request set-header Authorization ((secret))",
                        "secret": {"env": "UPSTREAM_AUTH"}}]}),
    # a second HAProxy object (on a node of its own: one HAProxy manifest per node) and
    # proxies whose first directive is a reference, so that each string field is first somewhere
    manifest("Cluster", "other", {"nodes": [{"name": "lb3", "id": 3, "address": "192.0.2.13/24"},
                                            {"name": "lb4", "id": 4, "address": "192.0.2.14/24"}], "stack": "none"}),
    manifest("HAProxy", "edge3", {
        "node": "lb4",
        "global": [{"line": "presetenv K ((secret))", "secret": {"file": "/etc/reconcile/secrets/k"}}],
        "defaults": [{"directives": [{"line": "http-request set-header X-K ((secret))",
                                      "secret": {"file": "/etc/reconcile/secrets/k"}}]}],
        "sections": [{"type": "http-errors", "name": "site",
                      "directives": [{"line": "errorfile 503 ((file))", "file": {"file": "/etc/reconcile/secrets/e"}}]}]}),
    manifest("HAProxy", "edge2", {
        "node": "lb3",
        "global": [{"line": "ca-base ((file))", "file": {"file": "/etc/reconcile/secrets/ca"}}],
        "defaults": [{"name": "d", "directives": [{"line": "errorfile 503 ((file))",
                                                      "file": {"file": "/etc/reconcile/secrets/503.http"}}]},
                     {"name": "d2", "defaults": "d",
                      "directives": [{"line": "http-request set-header X-K ((secret))",
                                      "secret": {"file": "/etc/reconcile/secrets/k"}}]}],
        "sections": [{"type": "resolvers", "name": "dc", "directives": ["nameserver dc1 192.0.2.2:53"]},
                     {"type": "http-errors", "name": "site",
                      "directives": [{"line": "errorfile 503 ((file))", "file": {"file": "/etc/reconcile/secrets/e"}}]}]}),
    manifest("Frontend", "web2", {
        "node": "lb3", "defaults": "d",
        "stats": {"uri": "/stats", "realm": "ops", "refresh": "10s",
                  "auth": [{"user": "ops", "password": {"file": "/etc/reconcile/secrets/s"}}]},
        "directives": [{"line": "http-request set-header X-K ((secret))", "secret": {"file": "/etc/reconcile/secrets/k"}}]}),
    manifest("Frontend", "web3", {
        "node": "lb3", "directives": [{"line": "bind :443 ssl crt ((file))", "file": {"file": "/etc/reconcile/secrets/c"}}]}),
    manifest("Backend", "named", {
        "node": "lb3", "section": "listen",
        "bind": [{"address": "0.0.0.0", "port": 8443, "options": ["accept-proxy"],
                  "tls": {"certificate": {"file": "/etc/reconcile/secrets/c"}, "alpn": ["h2"], "minVersion": "TLSv1.3"}}],
        "servers": [{"name": "n1", "host": "n1.corp.example.test", "port": 80, "resolvers": "dc"}],
        "healthCheck": {"type": "tcp", "address": "192.0.2.50", "port": 8080},
        "directives": [{"line": "http-request set-header X-K ((secret))", "secret": {"file": "/etc/reconcile/secrets/k"}}]}),
    manifest("Backend", "filed", {
        "node": "lb3", "directives": [{"line": "server s1 192.0.2.51:443 ssl ca-file ((file))",
                                       "file": {"file": "/etc/reconcile/secrets/ca"}}]}),
    manifest("Container", "app1", {
        "nodes": ["lb1", "lb2"], "template": "download",
        "download": {"distribution": "debian", "release": "bookworm", "architecture": "amd64"},
        "state": "running", "autostart": True, "startOrder": 10,
        "limits": {"memory": "64M", "cpus": "0-1", "cpuWeight": 200},
        "network": {"type": "bridge", "bridge": "app0", "address": "198.51.100.31/24",
                    "bridgeAddress": "198.51.100.1/24"},
        "init": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"], "files": {"/www/index.html": "hello\n"},
        "restartPolicy": "onChange", "stopTimeout": "10s", "lxcPath": "/var/lib/lxc"}),
    manifest("Container", "img1", {
        "node": "lb1", "template": "local",
        "local": {"rootfs": "/srv/images/rootfs.tar.xz", "metadata": "/srv/images/meta.tar.xz"}}),
    manifest("Container", "ct1", {"cluster": "web", "template": "busybox"}),
    manifest("Container", "full1", {
        "node": "lb1", "template": "busybox", "hostname": "full1.example.test",
        "network": {"type": "macvlan", "link": "eth0", "name": "eth0", "mac": "00:16:3e:00:00:01", "mtu": 1400,
                    "address": "198.51.100.41/24", "addresses": ["198.51.100.42/24 198.51.100.255"],
                    "gateway": "198.51.100.1", "ipv6": ["2001:db8::41/64"], "ipv6Gateway": "2001:db8::1",
                    "options": {"macvlan.mode": "bridge"}},
        "idmap": [{"type": "u", "container": 0, "host": 100000, "count": 65536},
                  {"type": "g", "container": 0, "host": 100000, "count": 65536}],
        "apparmor": {"profile": "lxc-container-default-cgns", "allowNesting": True, "allowIncomplete": False},
        "devices": [{"deny": "a"}, {"allow": "c 1:3 rwm"}], "capabilities": {"drop": ["sys_module", "sys_time"]},
        "mounts": [{"source": "/srv/data", "target": "srv/data", "type": "none", "options": ["bind", "create=dir"]}],
        "mountAuto": ["proc:mixed", "sys:ro"], "environment": {"APP_MODE": "production"},
        "config": ["lxc.sysctl.net.ipv4.ip_forward = 1", "lxc.cgroup.devices.allow ="],
        "files": {"/etc/app.conf": "mode=production\n"},
        "fileModes": {"/etc/app.conf": {"mode": "0640", "owner": 0, "group": 33}}}),
    manifest("Container", "multi1", {
        "node": "lb1", "template": "busybox",
        "networks": [{"type": "vlan", "link": "eth0", "name": "eth0", "mac": "00:16:3e:00:00:02", "mtu": 1400,
                      "address": "198.51.100.51/24", "addresses": ["198.51.100.52/24"], "gateway": "198.51.100.1",
                      "ipv6": ["2001:db8::51/64"], "ipv6Gateway": "2001:db8::1", "options": {"vlan.id": "10"}},
                     {"type": "none"}],
        "devices": [{"allow": "c 1:5 rwm"}], "capabilities": {"keep": ["net_bind_service"]}}),
    manifest("Container", "multi2", {
        "node": "lb1", "template": "busybox",
        "networks": [{"type": "bridge", "bridge": "app1", "address": "192.0.2.161/28",
                      "bridgeAddress": "192.0.2.174/28", "gateway": "auto"}]}),
    manifest("Container", "adopted1", {"node": "lb1", "adopt": True, "rootfs": "/srv/containers/adopted1"}),
    manifest("DomainJoin", "corp", {
        "nodes": ["lb1"], "domain": "corp.example.test", "user": "Administrator",
        "password": {"file": "/etc/reconcile/secrets/corp-join.password"}, "computerName": "WEB-LB",
        "ou": "OU=Servers,DC=corp,DC=example,DC=test", "sssdDomain": "CORP", "realm": "CORP.EXAMPLE.TEST",
        "adServers": ["dc1.corp.example.test"], "adBackupServers": ["dc2.corp.example.test:389"],
        "authProvider": "ad", "chpassProvider": "ad", "allowGroups": ["app-admins"], "allowUsers": ["alice"],
        "sudoGroups": ["Domain Admins"],
        "sudo": [{"groups": ["ops"], "users": ["bob"], "runAs": "root:adm", "noPassword": True,
                  "commands": ["/usr/bin/systemctl restart nginx"]}],
        "fullyQualifiedNames": False, "idMapping": True,
        "homeDirectories": {"create": True, "pattern": "/home/%u", "override": "/srv/home/%u", "skel": "/etc/skel",
                            "umask": "0077"},
        "accessProvider": "simple", "recommended": True,
        "options": {"nss": {"filter_users": "root"}, "domain": {"ldap_referrals": "false"}},
        "krb5": {"kdcs": ["dc1.corp.example.test"], "adminServer": "dc1.corp.example.test", "dnsLookupKdc": False,
                 "libdefaults": {"ticket_lifetime": "24h"}, "realmOptions": {"kpasswd_server": "dc1.corp.example.test"}}}),
    manifest("DomainJoin", "ldapjoin", {
        "node": "lb2", "domain": "ldap.example.test", "provider": "ldap", "join": "none", "accessProvider": "ldap",
        "accessFilter": "(memberOf=cn=ops,ou=groups,dc=ldap,dc=example,dc=test)"}),
    manifest("Mount", "reports", {
        "node": "lb1", "path": "/mnt/reports", "state": "mounted", "type": "rclone",
        "rclone": {"remote": {"type": "sftp", "options": {"host": "192.0.2.12"},
                              "secrets": {"pass": {"file": "/etc/reconcile/secrets/reports.password"}}},
                   "path": "reports", "flags": {"vfs-cache-mode": "writes"},
                   "hostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdxFtcZYEv"]},
        "readOnly": False, "owner": "root", "group": "root", "mode": "0755", "allowOther": True, "onBusy": "refuse"}),
    manifest("Mount", "sshfs1", {
        "node": "lb1", "path": "/mnt/sshfs1", "type": "sshfs",
        "sshfs": {"host": "192.0.2.12", "user": "files", "path": "reports",
                  "identity": {"file": "/etc/reconcile/secrets/reports.key"},
                  "hostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdxFtcZYEv"]},
        "options": ["noatime", "cache=yes"], "automount": {"idleTimeout": "5m"}}),
    manifest("Mount", "nfs1", {"node": "lb1", "path": "/mnt/nfs1", "type": "nfs",
                               "nfs": {"server": "192.0.2.5", "export": "/srv/nfs", "version": "4.2"}}),
    manifest("Mount", "cifs1", {"node": "lb1", "path": "/mnt/cifs1", "type": "cifs",
                                "cifs": {"server": "files.example.test", "share": "reports", "user": "app",
                                         "domain": "CORP", "password": {"env": "CIFS_PASSWORD"}}}),
    manifest("Mount", "bind1", {"node": "lb1", "path": "/mnt/bind1", "type": "bind", "bind": {"source": "/srv/data"}}),
    manifest("Mount", "tmp1", {"node": "lb1", "path": "/mnt/tmp1", "type": "tmpfs", "tmpfs": {"size": "64m"}}),
]

# (name, how it is made from a valid value). Appended, so that the payload is the only
# thing wrong with the value; "dash" is prefixed, "dotdot" adds a path segment.
PAYLOADS: list[tuple[str, Any]] = [
    ("newline at the end", lambda v: v + "\n"),
    ("CR", lambda v: v + "\rx"),
    ("NUL", lambda v: v + "\x00"),
    ("ESC", lambda v: v + "\x1b[2J"),
    ("U+2028", lambda v: v + "\u2028x"),
    ("U+0085", lambda v: v + "\x85x"),
    ("tab", lambda v: v + "\tx"),
    ("#", lambda v: v + "#x"),
    (";", lambda v: v + ";x"),
    ("{", lambda v: v + "{"),
    ("}", lambda v: v + "}"),
    ('"', lambda v: v + '"'),
    ("'", lambda v: v + "'"),
    ("$(…)", lambda v: v + "$(id)"),
    ("backticks", lambda v: v + "`id`"),
    ("leading -", lambda v: "-" + v),
    ("..", lambda v: v + "/../x"),
    ("XML", lambda v: v + "<a/>"),
    ("sudoers syntax", lambda v: v + " ALL=(ALL) NOPASSWD: ALL"),
    ("%", lambda v: v + "%"),
    ("section keyword", lambda v: v + "\nbackend x"),
    ("space", lambda v: v + " x"),
    ("bidi override", lambda v: v + "\u202ex"),
]
CONTROL = {"newline at the end", "CR", "NUL", "ESC", "U+2028", "U+0085", "tab", "section keyword", "bidi override"}

# --- the string fields of every kind, from the models ------------------------------------------


def _string_leaves(annotation: Any, path: tuple) -> Iterator[tuple]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _string_leaves(args[0], path)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _string_leaves(arg, path)
    elif origin is list:
        yield from _string_leaves(args[0], path + ("[]",))
    elif origin is dict:
        if any(True for _ in _string_leaves(args[0], ())):
            yield path + ("{key}",)
        yield from _string_leaves(args[1], path + ("{value}",))
    elif origin is typing.Literal:
        if all(isinstance(a, str) for a in args):
            yield path
    elif annotation is str:
        yield path
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from model_string_paths(annotation, path)


def model_string_paths(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    for name, info in model.model_fields.items():
        for leaf in _string_leaves(info.annotation, prefix + (info.alias or name,)):
            if leaf not in out:
                out.append(leaf)
    return out


FIELDS = [(kind, path) for kind, model in KINDS.items() for path in model_string_paths(model)]


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        if part == "[]":
            doc = doc[0]
        elif part == "{key}":
            return next(iter(doc))
        elif part == "{value}":
            doc = next(iter(doc.values()))
        else:
            doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> None:
    *parents, last = path
    for part in parents:
        doc = doc[0] if part == "[]" else next(iter(doc.values())) if part == "{value}" else doc[part]
    if last == "[]":
        doc[0] = value
    elif last == "{key}":
        old = next(iter(doc))
        items = list(doc.items())
        doc.clear()
        doc.update({value if k == old else k: v for k, v in items})
    elif last == "{value}":
        doc[next(iter(doc))] = value
    else:
        doc[last] = value


def _holder(kind: str, path: tuple) -> int | None:
    """The index in BASE of the first manifest of `kind` that sets `path`."""
    for i, doc in enumerate(BASE):
        if doc["kind"] != kind:
            continue
        try:
            value = _get(doc, path)
        except (KeyError, IndexError, StopIteration, TypeError):
            continue
        if isinstance(value, str):
            return i
    return None


# Placement fields a kind cannot have (a ClusterResource and a Pacemaker VIP need spec.cluster;
# a Cluster has none): not applicable. Every other field must be set in BASE.
NOT_APPLICABLE = {("ClusterResource", ("spec", "node")), ("ClusterResource", ("spec", "nodes", "[]")),
                  # the first defaults section has none above it to take settings from
                  ("HAProxy", ("spec", "defaults", "[]", "defaults"))}
PLACEMENT_VARIANTS = {("spec", "node"): {"node": "lb1"}, ("spec", "nodes", "[]"): {"nodes": ["lb1", "lb2"]},
                      ("spec", "cluster"): {"cluster": "web"}}


SECRET_VARIANTS = {"file": {"file": "/etc/reconcile/secrets/key"}, "env": {"env": "RECONCILE_SECRET"}}


def base_for(kind: str, path: tuple) -> tuple[list[dict], int] | None:
    """A valid tree whose manifest at the returned index sets `path`: BASE, or BASE with one
    manifest's placement (node, nodes, cluster) or secret reference (file, env) swapped (and,
    if the new placement then conflicts, without the other manifests of its kind)."""
    i = _holder(kind, path)
    if i is not None:
        return BASE, i
    for i, doc in enumerate(BASE):
        if doc["kind"] != kind:
            continue
        tree = copy.deepcopy(BASE)
        if path in PLACEMENT_VARIANTS:
            for key in ("node", "nodes", "cluster"):
                tree[i]["spec"].pop(key, None)
            tree[i]["spec"].update(PLACEMENT_VARIANTS[path])
        elif path[-1] in SECRET_VARIANTS:
            try:
                _set(tree[i], path[:-1], dict(SECRET_VARIANTS[path[-1]]))
            except (KeyError, IndexError, StopIteration, TypeError):
                continue
        else:
            return None
        if validate(tree) is not None:
            return tree, i
        # a kind of one object per node (DomainJoin): the others would now share its nodes
        alone = [d for j, d in enumerate(tree) if j == i or d["kind"] != kind]
        if path in PLACEMENT_VARIANTS and validate(alone) is not None:
            return alone, alone.index(tree[i])
    return None


# --- validate and render, as `reconcile` would, touching nothing ------------------------------


_PARSED: dict[int, Any] = {}  # documents of BASE (never changed) parsed once


def validate(docs: list[dict]) -> Tree | None:
    """The tree, or None when the loader would refuse it (schema or whole-tree checks)."""
    items = []
    for i, doc in enumerate(docs):
        if any(doc is base for base in BASE):
            if id(doc) not in _PARSED:
                _PARSED[id(doc)] = parse_document(doc, Source(f"m{i}.yaml", 1, {}))
            result = _PARSED[id(doc)]
        else:
            result = parse_document(doc, Source(f"m{i}.yaml", 1, {}))
        if isinstance(result, list):
            return None
        items.append(Loaded(result, Source(f"m{i}.yaml", 1, {})))
    tree = Tree(Path("/nonexistent"), items, "test")
    return None if check_tree(tree) else tree


def render(tree: Tree, tmp: Path) -> list[tuple[str, Any]]:
    """(format, rendered) for everything node lb1 would get."""
    node = Node(NODE, Runner(dry_run=True), tmp / "state")
    out: list[tuple[str, Any]] = []
    haproxy = HAProxyReconciler()
    haproxy.desired(tree, node)
    out.append(("haproxy", haproxy.config_text()))  # secrets as their references: values are read on nodes
    out.append(("keepalived", keepalived.render_config(NODE, desired_instances(tree, NODE))))
    for cluster in tree.on_node("Cluster", NODE):
        out.append(("corosync", render_corosync_conf(corosync_settings(cluster.metadata.name, cluster.spec), True)))
        cib = ET.fromstring("<cib><configuration><crm_config/></configuration></cib>")
        props = {"stonith-enabled": "false", **cluster.spec.properties}
        out.append(("xml", ET.tostring(set_properties(cib, props), encoding="unicode")))
    resources = ClusterResourceReconciler()
    resources.desired(tree, node)  # keeps the CIB states it computed
    for name in resources._states:
        elements = [render_unit(name, resources._states)] + render_constraints(name, resources._states)
        out += [("xml", ET.tostring(el, encoding="unicode")) for el in elements]
    containers = ContainerReconciler()
    containers._layout = CgroupLayout()
    for name, desired in containers.desired(tree, node)["Container"].items():
        spec, state = containers.specs[name], desired.state
        cluster = (state["pacemaker"] or {}).get("cluster")
        out.append(("lxc", render_block(name, state["source"], stop_seconds(spec),
                                        render_settings(name, state, containers.layout), cluster)))
        if spec.template:
            out.append(("argv", create_argv(name, spec.lxcPath, spec, "/tmp/seed.conf")))
        out.append(("paths", [spec.lxcPath, *spec.files]))
        out.append(("contents", [str(c) for c in spec.files.values()]))
    paths = Paths(keytab=tmp / "krb5.keytab", sudoers_dir=tmp / "sudoers.d")
    for join in tree.of_kind("DomainJoin"):  # every node's: one DomainJoin per node
        a = domain_files.render(join.metadata.name, join.spec, NODE)
        home = join.spec.homeDirectories
        out.append(("ini", a.sssd_conf))
        out.append(("sudoers", a.sudoers or ""))
        out.append(("krb5", a.krb5_conf or ""))
        out.append(("pam", pam_with_block("", a.name, home.skel, home.umask)))
        out.append(("argv", join_argv(join.spec, a.computer, paths.keytab)))
    mount_paths = MountPaths(config=tmp / "mount")
    mounts = MountReconciler(mount_paths)
    for name in mounts.desired(tree, node)["Mount"]:
        spec = mounts.specs[name]
        if spec.state != "mounted":
            continue
        e = mount_entry(name, spec, mount_paths, lambda owner, group: (0 if owner else None, 0 if group else None))
        flags = rclone_options(name, spec, mount_paths, lambda owner, group: (0, 0)) if spec.type == "rclone" else None
        out.append(("argv", mount_argv(e, flags)))
        out += [("ini", text) for text in units_for(name, spec, e).values()]
        out.append(("words", fstab_line(e)))
        out.append(("paths", [spec.path] + ([spec.bind.source] if spec.type == "bind" else [])
                    + ([spec.nfs.export] if spec.type == "nfs" else [])))
        if spec.type == "rclone":
            values = {**plain_values(name, spec, mount_paths), **{k: "obscured" for k in spec.rclone.remote.secrets}}
            out.append(("ini", rclone_conf(name, spec.rclone.remote.type, values, frozenset(spec.rclone.remote.secrets))))
        if host_keys(spec):
            host, port = (spec.sshfs.host, spec.sshfs.port) if spec.type == "sshfs" else (spec.rclone.remote.options["host"], 22)
            out.append(("words", known_hosts(host, port, host_keys(spec))))
        if spec.type == "cifs":
            out.append(("ini", cifs_credentials(spec.cifs.user, "the password", spec.cifs.domain)))
    return out


# --- the file formats, parsed back with their own rules -------------------------------------


def haproxy_words(line: str) -> list[str]:
    """HAProxy's word splitting: blanks separate, '#' starts a comment, backslash escapes,
    "…" and '…' quote (configuration manual 2.2)."""
    words, word, quote, i, started = [], "", None, 0, False
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "'\"":
            quote, started = c, True
        elif c == "\\" and i + 1 < len(line):
            word, started, i = word + line[i + 1], True, i + 1
        elif c == "#":
            break
        elif c in " \t":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + c, True
        i += 1
    assert quote is None, f"unterminated quote in {line!r}"
    if started:
        words.append(word)
    return words


def shape(fmt: str, rendered: Any) -> Any:
    """What must not change when one value changes: per line its kind, key and word count."""
    if fmt in ("argv", "paths", "contents"):
        if fmt == "argv":
            return [("-" if a.startswith("-") else "w", a.count("=") if a.startswith("--") else 0) for a in rendered]
        if fmt == "paths":
            return [p.startswith("/") and posixpath.normpath(p) == p and ".." not in p.split("/") for p in rendered]
        return len(rendered)
    if fmt == "xml":
        root = ET.fromstring(rendered)
        return [(el.tag, sorted(el.attrib), (el.text or "").strip()) for el in root.iter()]
    lines = rendered.split("\n")
    out: list[Any] = []
    for line in lines:
        stripped = line.strip()
        if fmt == "haproxy":
            words = haproxy_words(line)
            out.append((line[:1] in " \t", words[:1], len(words)) if words else "#" if stripped else "")
        elif fmt == "keepalived":
            text = re.split(r"[#!]", line, maxsplit=1)[0]
            words = text.split()
            special = [w for w in words if w[0] in "@~$" or "$" in w or '"' in w]
            out.append((words[:1], len(words), text.count("{"), text.count("}"), special))
        elif fmt == "corosync":
            out.append("#" if stripped.startswith("#") else ("open", stripped.split("{")[0].strip()) if "{" in line
                       else "close" if "}" in line else ("kv", stripped.split(":")[0]) if ":" in line else stripped)
        elif fmt == "lxc":
            if not stripped or stripped.startswith("#"):
                out.append(stripped[:1])
                continue
            key, _, value = stripped.partition("=")
            value = value.strip()
            words = len(value.split()) if key.strip() == "lxc.init.cmd" else 1
            out.append((key.strip(), words, value[:1] in "'\"", value == ""))
        elif fmt == "ini":
            out.append("continued" if line[:1] in " \t" and stripped else "#" if stripped[:1] in "#;" else
                       ("section", stripped.count("[")) if stripped.startswith("[") else
                       ("kv", stripped.split("=")[0].strip(), stripped.count(",")) if "=" in stripped else stripped)
        elif fmt == "pam":
            text = line.split("#", 1)[0]
            out.append((text.split()[:3], len(text.split()), "[" in text, text.endswith("\\")) if text.strip()
                       else "#" if stripped else "")
        elif fmt == "words":  # an fstab or known_hosts line: blank-separated fields
            out.append((len(line.split()), line.split()[:1] if line.startswith("#") else None))
        elif fmt == "sudoers":
            if not stripped or stripped.startswith("#") and not stripped.startswith("#include"):
                out.append("#" if stripped else "")
                continue
            bare = re.sub(r"\\.", "", stripped)  # what sudo reads as separators is never escaped
            who = bare.split("=", 1)[0]  # a '%' means a group only in the list of who
            out.append(("rule", bare[:1], [bare.count(c) for c in ",:=()!#"], who.count("%"), line.endswith("\\")))
        elif fmt == "krb5":
            text = stripped if stripped[:1] not in "#;" else ""
            out.append("#" if stripped and not text else ("section", text.count("[")) if text.startswith("[") else
                       ("rel", text.split("=")[0].strip(), "=" in text, text.count("{"), text.count("}"))
                       if text else "")
    return out


# --- the matrix ----------------------------------------------------------------------------------


_BASE_RENDERED: dict[int, list[tuple[str, Any]]] = {}


def _base_rendering(docs: list[dict], tmp: Path) -> list[tuple[str, Any]]:
    if id(docs) not in _BASE_RENDERED or docs is not BASE:
        tree = validate(docs)
        assert tree is not None, "the base tree does not validate"
        _BASE_RENDERED[id(docs)] = render(tree, tmp)
    return _BASE_RENDERED[id(docs)]


def language_line(kind: str, path: tuple) -> bool:
    """A field whose value is a line of HAProxy's own language (a directive): any words may
    stand in it; what must hold is that it stays one directive of its section."""
    return kind in ("HAProxy", "Frontend", "Backend") and (
        "directives" in path or path[:2] == ("spec", "global")) and path[-1] in ("[]", "line")


def coarse(rendered: str) -> list[Any]:
    """HAProxy's file as sections and directive lines only (the words of a line aside)."""
    from schemas.haproxy_lang import SECTION_KEYWORDS

    out: list[Any] = []
    for line in rendered.split("\n"):
        words = haproxy_words(line)
        out.append(("section", words[0]) if words and words[0] in SECTION_KEYWORDS and line[:1] not in " \t"
                    else "line" if line.strip() else "")
    return out


def outcome(kind: str, path: tuple, payload: Any, tmp: Path) -> str:
    """`refused` (validation), `refused by renderer`, `harmless` or `n/a`; an assertion fails
    when the payload got into what is rendered and changed its shape."""
    found = base_for(kind, path)
    if found is None:
        assert (kind, path) in NOT_APPLICABLE, f"{kind} {'.'.join(path)} is set in no manifest of BASE: add it"
        return "n/a"
    docs, i = found
    before = _base_rendering(docs, tmp)
    hostile = list(docs)  # only the document that gets the payload is copied
    hostile[i] = copy.deepcopy(docs[i])
    value = _get(hostile[i], path)
    _set(hostile[i], path, payload(value))
    tree = validate(hostile)
    if tree is None:
        return "refused"
    try:
        rendered = render(tree, tmp)
    except UnsafeValue:
        return "refused by renderer"
    assert [f for f, _ in rendered] == [f for f, _ in before], (kind, path)
    for (fmt, new), (_, old) in zip(rendered, before):
        if fmt == "haproxy" and language_line(kind, path):
            assert coarse(new) == coarse(old), f"{kind} {'.'.join(path)} = {payload(value)!r} changed {fmt}:\n{new}"
            continue
        assert shape(fmt, new) == shape(fmt, old), f"{kind} {'.'.join(path)} = {payload(value)!r} changed {fmt}:\n{new}"
        if fmt in ("argv", "paths"):  # one argument, one path: one line each
            assert all(unsafe_character(a) is None for a in new), (kind, path, fmt, new)
        elif fmt != "contents":  # only a file's own content may hold control characters
            assert all(unsafe_character(line.replace("\t", " ")) is None for line in new.split("\n")), (kind, path, fmt)
    return "harmless"


def test_every_kind_has_string_fields_in_the_matrix():
    kinds = {k for k, _ in FIELDS}
    assert kinds == set(KINDS)
    assert len(FIELDS) >= 70, len(FIELDS)  # a field lost from the walk would shrink this
    assert ("Container", ("spec", "init", "[]")) in FIELDS and ("Container", ("spec", "files", "{key}")) in FIELDS
    assert ("DomainJoin", ("spec", "homeDirectories", "skel")) in FIELDS


@pytest.mark.parametrize("kind,path", FIELDS, ids=[f"{k}.{'.'.join(p)}" for k, p in FIELDS])
def test_every_payload_is_refused_or_rendered_harmlessly(kind, path, tmp_path):
    results = {name: outcome(kind, path, make, tmp_path) for name, make in PAYLOADS}
    if set(results.values()) == {"n/a"}:
        return
    multi_line = kind == "Container" and path == ("spec", "files", "{value}")
    for name in CONTROL:
        if multi_line:  # a file's content: written as that file only (checked in outcome)
            assert results[name] == "harmless", (name, results[name])
        else:  # the schema refuses them, for every field, before any renderer sees them
            assert results[name] == "refused", (name, results[name])


def test_the_multi_line_field_is_the_only_one():
    def walk(model: type[BaseModel], seen: set) -> Iterator[str]:
        for name, info in model.model_fields.items():
            text = repr(info.metadata) + repr(info.annotation)
            if "_multi_line" in text:
                yield f"{model.__name__}.{name}"
            for arg in _types(info.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                    seen.add(arg)
                    yield from walk(arg, seen)

    found = sorted({f for model in KINDS.values() for f in walk(model, set())})
    assert found == ["ContainerSpec.files"], found
    assert isinstance(MultiLineText("x"), str)


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types(arg)


def test_a_rendered_init_command_splits_back_into_the_same_arguments(tmp_path):
    tree = validate(BASE)
    lines = [line for fmt, text in render(tree, tmp_path) if fmt == "lxc" for line in text.splitlines()]
    init = next(line for line in lines if line.startswith("lxc.init.cmd"))
    assert shlex.split(init.partition("=")[2]) == ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
