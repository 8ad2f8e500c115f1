"""What a dry-run may do: the read-only allow-list the recorder tests check against.

Kept in tests, apart from the product code, so that a reconciler cannot widen it by
declaring a command read-only. Each entry is a regular expression matched (re.match)
against `shlex.join(argv)` for commands, or against the joined detail for other channels
(a daemon's runtime socket). Add entries per kind, with the reason, in that kind's block.
"""
from __future__ import annotations

import re
import shlex

ALLOW: dict[str, list[str]] = {
    "exec": [
        # --- generic
        r"^(/usr/bin/)?(hostname|uname|id|cat /proc/)",
        # where systemd runs the daemons: whether their units are active and enabled, one
        # `systemctl show` for several (never start/stop/enable/reload)
        r"^systemctl show --property=Id,LoadState,ActiveState,UnitFileState,UnitFilePreset --"
        r"( [a-z0-9@-]+\.service)+$",
        # --- VirtualIP (keepalived)
        # keepalived's build-specific signal numbers, and `keepalived -t` on a temp file
        r"^keepalived --signum=JSON$",
        r"^keepalived -t -f /[A-Za-z0-9_./-]+$",
        # the JSON dump: a real-time signal only (36 on Debian 12), never TERM/KILL/HUP
        r"^kill -s (3[4-9]|[45][0-9]|6[0-4]) [0-9]+$",
        # every address of the node in one call, and the netlink monitor of watch()
        r"^ip -j addr$",
        r"^ip monitor address$",
        # --- Frontend / Backend (HAProxy)
        # HAProxy's own parser on a rendered config in a temp file (reconcile-check-*.cfg:
        # validate and dry-run; the runtime API is read through the "haproxy-api" channel)
        r"^haproxy -c -f /[A-Za-z0-9_./-]*reconcile-check-[A-Za-z0-9_]+\.cfg$",
        # --- Galera: its wsrep status, one client call over the local socket (health)
        r"^mariadb -N -B --connect-timeout=2 -e 'SHOW GLOBAL STATUS LIKE '\"'\"'wsrep_%'\"'\"''$",
        # --- Container (LXC)
        # every container's state in one call per LXC path; LXC's own parser (lxc-ls /
        # lxc-info on a temp LXC path) as the native validator of rendered configs; bridges
        # and veths with their aliases and masters in one call; the state monitor of watch()
        r"^lxc-ls -f -F NAME,STATE,PID -P /[A-Za-z0-9_./@+-]+ -l ERROR$",
        r"^lxc-ls -1 -P /[A-Za-z0-9_./-]*reconcile-lxc-check-[A-Za-z0-9_]+ -l ERROR$",
        r"^lxc-info -P /[A-Za-z0-9_./-]*reconcile-lxc-check-[A-Za-z0-9_]+ -n [a-z0-9-]+ -c lxc.uts.name -l ERROR$",
        r"^ip -j -d addr show$",
        r"^lxc-monitor -n '\.\*'( -P /[A-Za-z0-9_./@+-]+)+$",
        # LXC's default path, which ocf:heartbeat:lxc uses (Pacemaker-placed containers);
        # their primitives and this node's attributes come from `cibadmin --query --local`
        r"^lxc-config lxc\.lxcpath$",
        # --- Cluster / ClusterResource (Pacemaker)
        # the CIB (or one section; --local: this node's copy) and crm_mon's status, one call each
        r"^cibadmin --query( --scope (configuration|crm_config|resources|status))?( --local)?$",
        r"^crm_mon -1 --output-as=xml$",
        # an empty CIB to preview on while the cluster does not run yet
        r"^cibadmin --empty$",
        # Pacemaker's own checks and scheduler, on candidate CIBs in temp files
        r"^crm_verify --xml-file /[A-Za-z0-9_./-]*reconcile-cib-[A-Za-z0-9_]+\.xml -V$",
        r"^crm_simulate --xml-file /[A-Za-z0-9_./-]*reconcile-cib-[A-Za-z0-9_]+\.xml --simulate"
        r"( --node-up [a-z0-9-]+)* --output-as=xml$",
        # whether a resource agent exists; which cluster properties this Pacemaker knows
        r"^crm_resource --show-metadata [a-z]+:[A-Za-z0-9_:@.-]+$",
        r"^/usr/lib(exec)?/pacemaker/pacemaker-(schedulerd|controld|based) metadata$",
        # Corosync's own parser on a rendered corosync.conf in a temp folder
        r"^corosync -t -c /[A-Za-z0-9_./-]*reconcile-corosync-[A-Za-z0-9_]+/corosync\.conf$",
        # whether this node published the digest of its Corosync crypto settings (the reload barrier)
        r"^attrd_updater --query --all --name reconcile-corosync-crypto$",
        # the Pacemaker guard's allowance: the trailers of the commit being applied (shlex.join
        # quotes the --format argument: it has parentheses)
        r"^git -C /[A-Za-z0-9_./@+-]+ log -1 (?P<t>'?)--format=%\(trailers:key=Reconcile-Allow,valueonly\)(?P=t)"
        r" [0-9a-f]{40}$",
        # --- DomainJoin
        # the machine principal in the keytab; whether AD still accepts the membership
        r"^klist -k /[A-Za-z0-9_./-]+$",
        r"^adcli testjoin --domain=[a-z0-9.-]+ --host-keytab=/[A-Za-z0-9_./-]+$",
        # health: one AS exchange with the keytab's keys, the ticket kept in memory only
        r"^kinit -c MEMORY:reconcile-health -k -t /[A-Za-z0-9_./-]+ '[A-Z0-9-]{1,15}\$@[A-Z0-9.-]+'$",
        # native validators, check mode only, on temp files (validate / plan)
        r"^visudo -c -f /[A-Za-z0-9_./-]+$",
        r"^sssctl config-check -c /[A-Za-z0-9_./-]+ -s /[A-Za-z0-9_./-]+$",
        # health: the join user and the manifest's groups resolve through NSS (one call each)
        r"^getent (passwd|group) .+$",
        # --- Mount
        # one stat of every mount point (and bind source) reconcile made: a forced getattr
        # finds dead FUSE mounts; paths are schema-checked (no spaces: one argument each)
        r"^stat --cached=never -c '%u %g %a %d %i %n' --( /[A-Za-z0-9_./@+-]+)+$",
        # rclone as the native validator of remotes and mount flags
        r"^rclone config providers --config /dev/null$",
        r"^rclone mount --help --config /dev/null$",
        # systemd's check of rendered mount/automount units in a temp folder (a unit name
        # with systemd's \x escapes is quoted by shlex.join)
        r"^systemd-analyze verify( (?P<q>'?)/[A-Za-z0-9_./-]*reconcile-units-[A-Za-z0-9_]+/[A-Za-z0-9_.:\\-]+"
        r"\.(auto)?mount(?P=q))+$",
    ],
    # health: ARP probes (sender address 0.0.0.0: no cache anywhere learns from them) for
    # floating addresses and the peers' own, on one interface: "IFACE ADDRESS..."
    "arp-probe": [r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}( [0-9]{1,3}(\.[0-9]{1,3}){3})+$"],
    # A runtime socket: HAProxy's admin socket may only be asked `show …` / `get …`.
    "haproxy-api": [r"^(show|get) "],
}


def allowed(channel: str, argv: list[str]) -> bool:
    text = shlex.join(argv) if channel == "exec" else " ".join(argv)
    return any(re.match(p, text) for p in ALLOW.get(channel, []))
