"""Fixed facts of every lab: where it lives, its addresses, its test domain and passwords.

These are test fixtures, not secrets: the lab's domain exists only inside lab namespaces.
"""
from __future__ import annotations

import re
from pathlib import Path

# Not under /etc, /var, /run or /tmp: those are overlaid or replaced inside nodes, and
# overlayfs refuses an upper dir inside its own lower dir.
LAB_BASE = Path("/srv/reconcile-lab")
DEFAULT_NAME = "lab"
# A lab name is part of host-visible names (`<lab>-sw`, `<lab>-lb1` network namespaces,
# /srv/reconcile-lab/<lab>), so it has to be short and plain.
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,23}")

PREFIX_LEN = 24
SUBNET = "192.0.2.0/24"
MAX_NODES = 20  # lb1..lb20 = 192.0.2.11..30, clear of the VIPs in desired-state (.100)


def lb_address(index: int) -> str:
    """Address of node lb<index> (1-based): 192.0.2.(10 + index)."""
    return f"192.0.2.{10 + index}"


# Every node also has an IPv6 address on eth0, from the documentation prefix, with the same
# last digits: 192.0.2.11 → 2001:db8::11 (dc1: 2001:db8::2).
SUBNET6 = "2001:db8::/64"
PREFIX_LEN6 = 64


def address6(ipv4: str) -> str:
    """The IPv6 address of the node whose IPv4 address is `ipv4`."""
    return f"2001:db8::{ipv4.rsplit('.', 1)[1]}"


# Samba AD DC of a lab started with domain_controller=True.
DC_NODE = "dc1"
DC_ADDRESS = "192.0.2.2"
DOMAIN = "corp.example.test"
REALM = "CORP.EXAMPLE.TEST"
NETBIOS_DOMAIN = "CORP"
ADMIN_USER = "Administrator"
ADMIN_PASSWORD = "Lab-Admin.Pass-2024"
# Test users (password each) and groups (members each). "web users" has a space on purpose:
# sudoers and access rules must quote it.
USERS: dict[str, str] = {
    "alice": "Alice.Pass-2024",
    "bob": "Bob.Pass-2024",
    "carol": "Carol.Pass-2024",
}
GROUPS: dict[str, list[str]] = {
    "app-admins": ["alice"],
    "web users": ["bob"],
    "Domain Admins": ["alice"],  # built in: only members are added
}
# Inside every node of a lab with a DC; the example DomainJoin manifest reads it.
JOIN_PASSWORD_FILE = "/etc/reconcile/secrets/corp-join.password"

# Inside every node of every lab (one random key per lab, as corosync-keygen makes it);
# the example Cluster reads it.
COROSYNC_AUTHKEY_FILE = "/etc/reconcile/secrets/corosync.authkey"

# SFTP server of a lab started with sftp=True (controller/lab/sftp.py): user `files` on the
# last lb node, serving ~/reports. Every node gets the client key and the password at these
# paths (the example Mount manifests read them) and the server's host key in
# /etc/ssh/ssh_known_hosts.
SFTP_USER = "files"
SFTP_PASSWORD = "Lab-Sftp.Pass-2024"
SFTP_FOLDER = "reports"
SFTP_PASSWORD_FILE = "/etc/reconcile/secrets/reports-sftp.password"
SFTP_KEY_FILE = "/etc/reconcile/secrets/reports-sftp.key"
