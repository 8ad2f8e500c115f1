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
import functools
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
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.base import Node, Runner, UnsafeValue
from reconcilers.pacemaker.cluster import ClusterReconciler
from reconcilers.pacemaker.resources import ClusterResourceReconciler
from reconcilers.lxc.config import CgroupLayout, render_block
from reconcilers.lxc.reconciler import ContainerReconciler
from reconcilers.lxc.model import create_argv, render_settings, stop_seconds
from reconcilers.domain import files as domain_files
from reconcilers.domain.adcli import join_argv
from reconcilers.domain.files import Paths
from reconcilers.domain.pam import pam_with_block
from reconcilers.mount import MountReconciler
from reconcilers.galera import GaleraReconciler
from reconcilers.galera import render as galera_render
from reconcilers.mount.apply import units_for
from reconcilers.mount.credentials import host_keys, plain_values
from reconcilers.mount.model import Paths as MountPaths, entry as mount_entry, rclone_options
from reconcilers.mount.render import cifs_credentials, fstab_line, known_hosts, mount_argv, rclone_conf
from reconcilers.keepalived.render import render_text
from schemas import KINDS
from schemas.common import MultiLineText, unsafe_character

NODE = "lb1"
KEEPALIVED_KINDS = {"Keepalived", "VirtualIP", "VirtualServer"}


def manifest(kind: str, name: str, spec: dict) -> dict:
    metadata = {"name": name, "labels": {"tier": "web"}, "drift": "correct"}
    return {"apiVersion": "reconcile/v1", "kind": kind, "metadata": metadata, "spec": spec}


def _cmd(arg: str) -> dict:
    return {"command": ["/usr/bin/logger", arg], "user": "root", "group": "root"}


_TRACK = {"interfaces": [{"name": "eth1"}], "scripts": [{"name": "chk"}], "files": [{"name": "maint"}],
          "processes": [{"name": "proc"}], "bfd": [{"name": "bfd1"}]}
_NOTIFY = {k: _cmd(k) for k in ("master", "backup", "fault", "stop", "deleted", "any", "masterRxLowerPri")}
_VIP_ADDRESS = {"dev": "eth1", "label": "eth1:vip", "scope": "global", "brd": "192.0.2.255", "options": ["home"]}
# keepalived's VRRP instances, between them setting every field (a per-node field both ways)
KEEPALIVED_VIPS = {
    "vi-full": {"addresses": [{"address": "192.0.2.130/24", **_VIP_ADDRESS}], "keepalived": {
        "routerId": 60, "version": 2, "state": "MASTER", "unicastPeers": ["192.0.2.12"], "unicastSrcIp": "192.0.2.11",
        "mcastDstIp": "224.0.0.19", "authentication": {"type": "PASS", "password": {"file": "/etc/reconcile/secrets/vi"}},
        "excludedAddresses": [{"address": "192.0.2.131/24", **_VIP_ADDRESS}], "routes": ["198.51.100.0/24 via 192.0.2.1"],
        "rules": ["from 192.0.2.0/24 table 1"], "track": _TRACK, "notify": _NOTIFY, "extra": ["garp_extra_if 100"]}},
    "vi-pernode": {"addresses": [{"address": "192.0.2.132/24"}], "keepalived": {
        "routerId": 61, "state": {"lb1": "BACKUP"}, "unicastPeers": ["192.0.2.12"], "unicastSrcIp": {"lb1": "192.0.2.11"}}},
    "vi-mcast": {"addresses": [{"address": "192.0.2.133/24"}], "keepalived": {
        "routerId": 62, "multicast": True, "mcastSrcIp": "192.0.2.11"}},
    "vi-mcast2": {"addresses": [{"address": "192.0.2.134/24"}], "keepalived": {
        "routerId": 63, "multicast": True, "mcastSrcIp": {"lb1": "192.0.2.11"}}},
}


RULE = {"id": "r1", "score": "INFINITY", "booleanOp": "and", "role": "Started", "expressions": [
    {"id": "r1-e", "attribute": "#uname", "operation": "eq", "value": "lb1", "type": "string",
     "valueSource": "literal"}]}
DATE = {"id": "d1", "operation": "in_range", "start": "2024-01-01", "end": "2030-12-31",
        "duration": {"id": "d1-dur", "years": "1", "months": "2", "weeks": "3", "days": "4", "hours": "5", "minutes": "6",
                     "seconds": "7"},
        "dateSpec": {"id": "d1-spec", "hours": "9-17", "monthdays": "1-31", "weekdays": "1-5", "yeardays": "1-366",
                     "months": "1-12", "weeks": "1-53", "years": "2024", "weekyears": "2024", "moon": "0-7"}}
VARIANTS = [
    {"quorum": {"lastManStanding": True, "lastManStandingWindow": "10s", "autoTieBreaker": True,
                "autoTieBreakerNode": "lowest", "provider": "corosync_votequorum",
                "device": {"model": "net", "timeout": "10s", "syncTimeout": "30s",
                           "net": {"host": "192.0.2.30", "algorithm": "ffsplit", "tieBreaker": "lowest", "tls": "off",
                                   "connectTimeout": "8s", "forceIpVersion": "4"}}},
     "constraints": [{"type": "colocation", "id": "c3", "resource": "a3", "with": "b3", "score": "INFINITY",
                      "role": "Started", "withRole": "Started", "nodeAttribute": "rack"}],
     "fencingLevels": [{"index": 1, "targetPattern": "lb.*", "devices": ["b3"]}]},
    {"constraints": [{"type": "order", "id": "c4", "first": "a4", "then": "b4", "firstAction": "start",
                      "thenAction": "start", "kind": "Mandatory"}],
     "fencingLevels": [{"index": 1, "targetAttribute": "rack", "targetValue": "r1", "devices": ["b4"]}]},
    {"constraints": [{"type": "ticket", "id": "c5", "resource": "a5", "ticket": "t5", "lossPolicy": "stop",
                      "role": "Started"}]},
    {"constraints": [{"type": "location", "id": "c6", "pattern": "^a", "node": "lb13", "score": 50}]},
    {"constraints": [{"type": "order", "id": "c7", "sets": [{"id": "c7-set", "resources": ["a7", "b7"],
                                                             "ordering": "listed", "action": "start",
                                                             "role": "Started", "score": "INFINITY",
                                                             "kind": "Mandatory"}]}]},
]


NODE_ATTRIBUTES = [  # the first node's attributes of each variant cluster
    {"rack": "r1"},
    [{"values": {"rack": "r1"}, "rule": {"scoreAttribute": "weight", "expressions": [{"date": DATE}]}}],
    [{"values": {"rack": "r1"}, "rule": {"expressions": [{"rule": {
        "id": "n-inner", "score": "INFINITY", "booleanOp": "or", "expressions": [{"resource": {
            "id": "n-rsc", "class": "ocf", "provider": "pacemaker", "type": "Dummy"}}]}}]}}],
    [{"values": {"rack": "r1"}, "rule": {"expressions": [{"rule": {"expressions": [{"op": {
        "id": "n-op", "name": "monitor", "interval": "10s"}}]}}]}}],
    {"rack": "r2"},
]


def variant_cluster(n: int, extra: dict) -> list[dict]:
    """Cluster cN of nodes lb(2n+1), lb(2n+2) with resources aN, bN (bN a fencing device)."""
    first, second = 2 * n + 1, 2 * n + 2
    spec = {"nodes": [{"name": f"lb{first}", "id": 1, "address": f"192.0.2.{20 + first}/24",
                       "attributes": NODE_ATTRIBUTES[n - 3]},
                      {"name": f"lb{second}", "id": 2, "address": f"192.0.2.{20 + second}/24"}],
            "crypto": "none", "stonithEnabled": False, **extra}
    return [manifest("Cluster", f"c{n}", spec),
            manifest("ClusterResource", f"a{n}", {"cluster": f"c{n}", "agent": "ocf:pacemaker:Dummy"}),
            manifest("ClusterResource", f"b{n}", {"cluster": f"c{n}", "agent": "stonith:fence_dummy"})]


# One valid tree in which every string field of every kind is set somewhere.
BASE = [
    manifest("Cluster", "web", {
        "nodes": [{"name": "lb1", "id": 1, "address": "192.0.2.11/24", "links": ["192.0.2.11", "2001:db8::11"],
                   "attributes": [{"id": "lb1-attrs", "values": {"rack": "r1"}, "ids": {"rack": "lb1-rack"},
                                   "score": "INFINITY", "rule": RULE}],
                   "utilization": {"cpu": "8"}},
                  {"name": "lb2", "id": 2, "address": "192.0.2.12/24", "links": ["192.0.2.12", "2001:db8::12"]}],
        "stack": "pacemaker", "transport": "knet", "links": [{"transport": "udp"}, {"transport": "udp"}],
        "crypto": {"cipher": "aes256", "hash": "sha256", "model": "nss"},
        "authkey": {"env": "COROSYNC_AUTHKEY"}, "token": "1000ms",
        "totem": {"consensus": "1200ms", "join": "60ms", "tokenCoefficient": "650ms", "linkMode": "passive",
                  "ipVersion": "ipv4-6", "clusterUuid": "0123456789abcdef0123456789abcdef"},
        "quorum": {"twoNode": True, "waitForAll": True}, "corosync": {"logging": {"debug": "off"}},
        "stonithEnabled": False, "properties": {"no-quorum-policy": "ignore"},
        "resourceDefaults": {"resource-stickiness": "100"}, "operationDefaults": {"timeout": "60s"},
        "alerts": [{"id": "to-file", "path": "/usr/share/pacemaker/alerts/alert_file.sh", "description": "file",
                    "params": {"a": "1"}, "meta": {"timeout": "10s"}, "select": {"nodes": True, "attributes": ["rack"]},
                    "recipients": [{"id": "to-file-log", "value": "/var/log/pacemaker/alerts.log",
                                    "description": "log", "params": {"b": "2"}, "meta": {"c": "3"}}]}],
        "fencingLevels": [{"id": "fl-lb1", "index": 1, "target": "lb1", "devices": ["fence1"]}],
        "tags": [{"id": "databases", "refs": ["db"]}],
        "constraints": [{"type": "location", "id": "db-on-lb1", "resource": "db", "node": "lb1", "score": "INFINITY",
                         "role": "Started", "resourceDiscovery": "always"}],
        "rollout": {"order": ["lb2", "lb1"], "maxUnavailable": 1, "soak": "5s", "onFailure": "rollback",
                    "turnTimeout": "20s", "healthGate": {"timeout": "30s", "probes": [
                        {"type": "http", "address": "192.0.2.100", "port": 80, "path": "/health",
                         "expectStatus": [200], "timeout": "1s"}]}}}),
    manifest("ClusterResource", "fence1", {
        "cluster": "web", "agent": "stonith:fence_ipmilan", "params": {"ip": "192.0.2.201"}}),
    # every other field of the vocabulary, once (a rule's first expression is one kind each)
    manifest("ClusterResource", "p1", {
        "cluster": "web", "agent": "ocf:pacemaker:Dummy", "description": "all the fields",
        "params": [{"id": "p1-params", "values": {"state": "/run/p1"}, "ids": {"state": "p1-state"}, "score": "INFINITY",
                    "rule": RULE}],
        "meta": [{"id": "p1-meta", "values": {"target-role": "Started"}, "ids": {"target-role": "p1-tr"},
                  "score": "INFINITY"}],
        "utilization": {"cpu": "1"},
        "operations": [{"id": "p1-mon", "name": "monitor", "interval": "10s", "timeout": "20s", "role": "Started",
                        "onFail": "restart", "startDelay": "0s", "intervalOrigin": "2024-01-01", "requires": "quorum",
                        "description": "watch", "params": {"OCF_CHECK_LEVEL": "10"}, "meta": {"record-pending": "1"}}],
        "operationsId": "p1-ops",
        "clone": {"id": "p1-clone", "meta": {"interleave": "true"}, "description": "everywhere"},
        "location": [{"id": "p1-loc", "node": "lb1", "score": "INFINITY", "role": "Started",
                      "resourceDiscovery": "always"}],
        "colocation": [{"id": "p1-with", "with": "dbvip", "score": "INFINITY", "role": "Started",
                        "withRole": "Started", "nodeAttribute": "rack"}],
        "order": [{"id": "p1-after", "first": "dbvip", "firstAction": "start", "thenAction": "start",
                   "kind": "Mandatory", "score": "INFINITY"}]}),
    manifest("ClusterResource", "p2", {"cluster": "web", "agent": "ocf:pacemaker:Dummy", "params": [
        {"values": {"state": "/run/p2"}, "rule": {"expressions": [{"date": DATE}]}}]}),
    manifest("ClusterResource", "p3", {"cluster": "web", "agent": "ocf:pacemaker:Dummy", "params": [
        {"values": {"state": "/run/p3"}, "rule": {"scoreAttribute": "weight", "expressions": [{"rule": {
            "id": "p3-inner", "score": "INFINITY", "booleanOp": "or", "expressions": [{"resource": {
                "id": "p3-rsc", "class": "ocf", "provider": "pacemaker", "type": "Dummy"}}]}}]}}]}),
    manifest("ClusterResource", "p4", {"cluster": "web", "agent": "ocf:pacemaker:Dummy", "params": [
        {"values": {"state": "/run/p4"}, "rule": {"expressions": [{"rule": {"expressions": [{"op": {
            "id": "p4-op", "name": "monitor", "interval": "10s"}}]}}]}}]}),
    # clusters of other nodes, for the fields a first list item can hold only one of
    *[doc for n, extra in enumerate(VARIANTS, start=3) for doc in variant_cluster(n, extra)],
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
    *[manifest("VirtualIP", name, {"node": "lb1", "manager": "keepalived", "interface": "eth0", **spec})
      for name, spec in KEEPALIVED_VIPS.items()],
    manifest("Keepalived", "k1", {
        "cluster": "web",
        "globalDefs": {
            "routerId": "lb1", "scriptUser": "root", "scriptGroup": "root", "notificationEmail": ["ops@example.test"],
            "notificationEmailFrom": "ka@example.test", "smtpServer": {"host": "192.0.2.25"},
            "smtpHeloName": "lb1.example.test", "startupScript": _cmd("start"), "shutdownScript": _cmd("stop"),
            **{f: {"path": f"/run/{f}", "user": "root", "group": "root", "script": _cmd(f)}
               for f in ("notifyFifo", "vrrpNotifyFifo", "lvsNotifyFifo")},
            "extra": ["vrrp_garp_master_delay 2"]},
        "scripts": {"chk": {"command": ["/usr/bin/pgrep", "haproxy"], "user": "root", "group": "root",
                            "extra": ["timeout 2"]}},
        "trackFiles": {"maint": {"file": "/run/maint"}},
        "trackProcesses": {"proc": {"process": ["haproxy"], "paramMatch": "initial"}},
        "syncGroups": {"g1": {"instances": ["web-group"], "track": _TRACK, "notify": _NOTIFY, "extra": ["smtp_alert"]}},
        "virtualServerGroups": {"vsg": ["192.0.2.140 80"]},
        "ssl": {"password": {"file": "/etc/reconcile/secrets/ssl.pass"}, "ca": "/etc/ssl/ca.pem",
                "certificate": "/etc/ssl/cert.pem", "key": "/etc/ssl/key.pem"},
        "files": [{"path": "check.sh", "content": "#!/bin/sh\nexit 0\n", "owner": "root", "group": "root"}],
        "includes": ["/etc/keepalived/conf.d/extra.conf"], "lines": ["net_namespace_ipvs lab"],
        "blocks": [{"block": "static_ipaddress", "lines": ["192.0.2.250/24 dev eth0"]}]}),
    manifest("VirtualServer", "vs1", {
        "node": "lb1", "address": "192.0.2.140", "port": 80, "protocol": "TCP",
        "realServers": [{"address": "192.0.2.21", "port": 80, "notifyUp": _cmd("up"), "notifyDown": _cmd("down"),
                         "checks": [{"type": "MISC_CHECK", "misc": _cmd("misc"), "extra": ["misc_timeout 5"],
                                     "blocks": [{"block": "url", "lines": ["path /"]}]}],
                         "extra": ["weight 2"], "blocks": [{"block": "custom", "lines": ["key value"]}]}],
        "quorumUp": _cmd("quorum-up"), "quorumDown": _cmd("quorum-down"), "extra": ["lb_algo rr"],
        "blocks": [{"block": "custom", "lines": ["key value"]}]}),
    manifest("VirtualServer", "vs2", {"node": "lb1", "group": "vsg", "protocol": "UDP"}),
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
    manifest("Galera", "gdb", {
        "cluster": "web", "bootstrap": "lb2", "provider": "/usr/lib/galera/libgalera_smm.so", "bindAddress": "node",
        "sst": {"method": "mariabackup", "user": "sst", "password": {"file": "/etc/reconcile/secrets/sst"}},
        "settings": {"innodb_buffer_pool_size": "256M", "wsrep_provider_options": "gcache.size=1G; gcs.fc_limit=128"}}),
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


def _string_leaves(annotation: Any, path: tuple, seen: set) -> Iterator[tuple]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _string_leaves(args[0], path, seen)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _string_leaves(arg, path, seen)
    elif origin is list:
        yield from _string_leaves(args[0], path + ("[]",), seen)
    elif origin is dict:
        if any(True for _ in _string_leaves(args[0], (), set())):
            yield path + ("{key}",)
        yield from _string_leaves(args[1], path + ("{value}",), seen)
    elif origin is typing.Literal:
        if all(isinstance(a, str) for a in args):
            yield path
    elif annotation is str:
        yield path
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # A model used in several places of one kind (a Pacemaker name/value set, a rule)
        # is one model and one renderer: its fields are in the matrix where it first appears.
        if annotation not in seen:
            seen.add(annotation)
            yield from model_string_paths(annotation, path, seen)


def model_string_paths(model: type[BaseModel], prefix: tuple = (), seen: set | None = None) -> list[tuple]:
    out: list[tuple] = []
    seen = set() if seen is None else seen
    for name, info in model.model_fields.items():
        for leaf in _string_leaves(info.annotation, prefix + (info.alias or name,), seen):
            if leaf not in out:
                out.append(leaf)
    return out


FIELDS = [(kind, path) for kind, model in KINDS.items() for path in model_string_paths(model)]


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        if part == "[]":
            doc = doc[0] if isinstance(doc, list) else {}[part]
        elif part == "{key}":
            return next(iter(doc)) if isinstance(doc, dict) else {}[part]
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
        except (KeyError, IndexError, StopIteration, TypeError, AttributeError):  # a mapping or a list
            continue
        if isinstance(value, str):
            return i
    return None


# Placement fields a kind cannot have (a ClusterResource and a Pacemaker VIP need spec.cluster;
# a Cluster has none): not applicable. Every other field must be set in BASE.
NOT_APPLICABLE = {("ClusterResource", ("spec", "node")), ("ClusterResource", ("spec", "nodes", "[]")),
                  # a Galera's members are its Cluster's nodes: spec.cluster only
                  ("Galera", ("spec", "node")), ("Galera", ("spec", "nodes", "[]")),
                  # the first defaults section has none above it to take settings from
                  ("HAProxy", ("spec", "defaults", "[]", "defaults"))}
PLACEMENT_VARIANTS = {("spec", "node"): {"node": "lb1"}, ("spec", "nodes", "[]"): {"nodes": ["lb1", "lb2"]},
                      ("spec", "cluster"): {"cluster": "web"}}


SECRET_VARIANTS = {"file": {"file": "/etc/reconcile/secrets/key"}, "env": {"env": "RECONCILE_SECRET"}}


@functools.lru_cache(maxsize=None)  # one search per field, not one per payload
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
            except (KeyError, IndexError, StopIteration, TypeError, AttributeError):
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
    return _checked(items)


def _checked(items: list) -> Tree | None:
    tree = Tree(Path("/nonexistent"), items, "test")
    return None if check_tree(tree) else tree


def render(tree: Tree, tmp: Path) -> list[tuple[str, Any]]:
    """(format, rendered) for everything node lb1 would get."""
    node = Node(NODE, Runner(dry_run=True), tmp / "state")
    out: list[tuple[str, Any]] = []
    haproxy = HAProxyReconciler()
    haproxy.desired(tree, node)
    out.append(("haproxy", haproxy.config_text()))  # secrets as their references: values are read on nodes
    keepalived, config = render_text(tree, NODE, tmp / "state", lambda ref: "secret-value")
    out.append(("keepalived", keepalived.text))
    out.append(("paths", [f.target() for f in config.files]))
    out.append(("contents", [f.content for f in config.files]))
    clusters = ClusterReconciler()
    clusters.desired(tree, node)  # corosync.conf, as `reconcile render` writes it
    out += [("corosync", text) for _, text in sorted(clusters.render(node).items())]
    resources = ClusterResourceReconciler()
    resources.desired(tree, node)  # the whole CIB configuration: resources, constraints, cluster sections
    out += [("xml", text) for _, text in sorted(resources.render(node).items())]
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
    galera = GaleraReconciler(str(tmp / "galera.cnf"))
    for name in galera.desired(tree, node)["Galera"]:
        spec = galera.specs[name]
        auth = galera_render.sst_auth(spec, "the password") if spec.sst.method == "mariabackup" else ""
        out.append(("ini", galera_render.text(galera_render.lines(name, spec, NODE, galera.members[name], auth))))
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


def keepalived_words(line: str) -> tuple[list[str], tuple[int, int]]:
    """keepalived's word splitting (keepalived.conf(5)): blanks separate, '#' and '!' start a
    comment outside quotes, "…" and '…' group; and the unquoted '{' and '}' of the line."""
    words, word, quote, started, opened, closed = [], "", None, False, 0, 0
    for c in line:
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "'\"":
            quote, started = c, True
        elif c in "#!" and not started:
            break
        elif c in " \t":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + c, True
    assert quote is None, f"unterminated quote in {line!r}"
    if started:
        words.append(word)
    opened = sum(1 for w in words if w == "{")
    closed = sum(1 for w in words if w == "}")
    return words, (opened, closed)


def shape(fmt: str, rendered: Any, relaxed: bool = False) -> Any:
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
            words, braces = keepalived_words(line)
            special = [w for w in words if w[:1] in ("@", "~") or "$" in w]
            if relaxed:  # a verbatim line: its words are the operator's; it must stay one line of its block
                out.append((bool(words), braces, special))
            else:
                out.append((words[:1], len(words), braces, special))
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
    if id(docs) not in _BASE_RENDERED:  # BASE, or a variant base_for keeps (never changed)
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
    # keepalived's verbatim lines (extra, lines, routes, rules, a block's header, a
    # virtual_server_group's entries): their words are the operator's, one line stays one line.
    relaxed = kind in KEEPALIVED_KINDS and (path[-1] == "block" or path[-2:-1] in (
        ("extra",), ("lines",), ("routes",), ("rules",)) or path[:3] == ("spec", "virtualServerGroups", "{value}"))
    for (fmt, new), (_, old) in zip(rendered, before):
        if fmt == "haproxy" and language_line(kind, path):
            assert coarse(new) == coarse(old), f"{kind} {'.'.join(path)} = {payload(value)!r} changed {fmt}:\n{new}"
            continue
        assert shape(fmt, new, relaxed and fmt == "keepalived") == shape(fmt, old, relaxed and fmt == "keepalived"), \
            f"{kind} {'.'.join(path)} = {payload(value)!r} changed {fmt}:\n{new}"
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
    multi_line = (kind, path) in (("Container", ("spec", "files", "{value}")),
                                  ("Keepalived", ("spec", "files", "[]", "content")))
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
    assert found == ["ContainerSpec.files", "ScriptFile.content"], found
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
