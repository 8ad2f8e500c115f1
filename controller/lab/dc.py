"""The lab's Samba AD domain controller (node dc1): provision, add test users, start, wait.

Provisioning runs inside dc1, so samba-tool writes dc1's private /etc/samba and
/var/lib/samba (overlay), never the host's. It takes about 4 s, so the provisioned
domain (taken offline, before samba first starts) is kept as a tar file under
/srv/reconcile-lab/.cache/, keyed by the Samba build and this module's recipe; the next
lab unpacks it into its own dc1 instead. Every lab's DC is the same domain with the same
passwords; the labs never see each other.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from controller.lab import config
from controller.lab.lab import LabError

if TYPE_CHECKING:
    from controller.lab.lab import Lab

CACHE_DIR = config.LAB_BASE / ".cache"
RECIPE = 1  # bump when the provisioning below changes: older cache files are then ignored
SAMBA_DIRS = ("etc/samba", "var/lib/samba", "var/cache/samba")
# tar keeps the NT ACLs Samba puts on sysvol (security.NTACL, POSIX ACLs).
TAR = ["tar", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"]


def provision_argv() -> list[str]:
    return ["samba-tool", "domain", "provision", f"--realm={config.REALM}",
            f"--domain={config.NETBIOS_DOMAIN}", "--server-role=dc", "--dns-backend=SAMBA_INTERNAL",
            "--use-rfc2307", f"--adminpass={config.ADMIN_PASSWORD}", f"--host-name={config.DC_NODE}",
            f"--host-ip={config.DC_ADDRESS}", "--option=interfaces=lo eth0",
            "--option=bind interfaces only=yes"]


def cache_file() -> Path:
    """The cache file for this Samba build and this recipe (it may not exist yet)."""
    key = {"recipe": RECIPE, "argv": provision_argv(), "users": config.USERS, "groups": config.GROUPS}
    for binary in ("/usr/sbin/samba", "/usr/bin/samba-tool"):
        st = os.stat(binary)
        key[binary] = [st.st_size, st.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE_DIR / f"samba-dc-{digest}.tar"


def start(lab: Lab, timeout: float = 120.0) -> None:
    """Give dc1 a provisioned domain (from the cache or fresh), start samba, wait until
    DNS, Kerberos and LDAP answer."""
    node = config.DC_NODE
    lab.exec(node, ["rm", "-f", "/etc/samba/smb.conf"])  # the host's, for a file server
    cache = cache_file()
    if cache.exists():
        lab.exec(node, [*TAR, "-xpf", str(cache), "-C", "/"], timeout=timeout)
    else:
        provision(lab, timeout)
        # Written into dc1's own folder (the host's file system is read-only in nodes but
        # there), then moved: a lab provisioning at the same time just replaces it.
        tmp = lab.root / "nodes" / node / "samba-dc.tar"
        lab.exec(node, [*TAR, "-cpf", str(tmp), "-C", "/", *SAMBA_DIRS], timeout=timeout)
        tmp.chmod(0o600)  # the domain's keys are inside
        CACHE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.rename(cache)
    # -D: samba detaches (closing its output), and the node's init becomes its parent.
    lab.exec(node, ["samba", "-D"], timeout=timeout)
    deadline = time.monotonic() + timeout
    for port in (53, 88, 389):
        lab.wait_tcp(node, config.DC_ADDRESS, port, timeout=max(1.0, deadline - time.monotonic()))
    srv = f"_ldap._tcp.{config.DOMAIN}"
    while not lab.exec(node, ["dig", "+short", "+time=1", "+tries=1", "-t", "SRV", srv,
                              f"@{config.DC_ADDRESS}"], check=False).stdout.strip():
        if time.monotonic() > deadline:
            raise LabError(f"{node}: samba does not answer {srv} SRV after {timeout}s")
        time.sleep(0.1)


def provision(lab: Lab, timeout: float) -> None:
    """A fresh domain in dc1: samba-tool provision, then the test users and groups."""
    node = config.DC_NODE
    lab.exec(node, provision_argv(), timeout=timeout)
    # samba-tool copies the node's resolver into `dns forwarder`; the lab has no upstream
    # DNS, so the DC answers for its own zone and refuses to recurse.
    conf = lab.read_file(node, "/etc/samba/smb.conf")
    conf = "".join(line for line in conf.splitlines(True) if not line.strip().startswith("dns forwarder"))
    lab.write_file(node, "/etc/samba/smb.conf", conf)
    spec = {"users": config.USERS, "groups": config.GROUPS, "admin": config.ADMIN_USER}
    lab.exec(node, ["/usr/bin/python3", "-c", _ADD_USERS], input=json.dumps(spec), timeout=timeout)


def answers(lab: Lab) -> dict[str, bool]:
    """Whether dc1 accepts connections on DNS, Kerberos and LDAP (for `lab status`)."""
    r = lab.exec(config.DC_NODE, ["/usr/bin/python3", "-I", "-c", _PROBE, config.DC_ADDRESS],
                 check=False, timeout=15)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"dns": False, "kerberos": False, "ldap": False}


# One process for all users and groups (samba-tool would be one process, ~0.3 s, each).
_ADD_USERS = """\
import json, sys
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
spec = json.load(sys.stdin)
lp = LoadParm()
lp.load_default()
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
for user, password in spec["users"].items():
    db.newuser(user, password, givenname=user.capitalize())
for group, members in spec["groups"].items():
    if not db.search(db.domain_dn(), expression="(&(objectClass=group)(sAMAccountName=%s))" % group):
        db.newgroup(group)
    db.add_remove_group_members(group, members, add_members_operation=True)
for user in [spec["admin"], *spec["users"]]:  # test passwords never expire
    db.setexpiry("(sAMAccountName=%s)" % user, 0, no_expiry_req=True)
"""

_PROBE = """\
import json, socket, sys
out = {}
for name, port in (("dns", 53), ("kerberos", 88), ("ldap", 389)):
    try:
        socket.create_connection((sys.argv[1], port), timeout=2).close()
        out[name] = True
    except OSError:
        out[name] = False
print(json.dumps(out))
"""
