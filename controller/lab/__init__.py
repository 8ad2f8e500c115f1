"""The lab: real multi-node HA on one machine, for the integration tests and the demo.

A lab node is a machine as far as the daemons (and reconcile) can tell: its own network,
mount, UTS, IPC and PID namespaces, host name, /etc, /var, /run. Nodes `lb1..lbN`
(192.0.2.11..) and optionally `dc1` (192.0.2.2, a real Samba AD DC for corp.example.test)
sit on one bridge. Needs root. Design: design.md §7.

Python API (tests, other tools)::

    from controller.lab import Lab, temporary_lab, reconcile

    lab = Lab("demo").up(nodes=2, domain_controller=False, sftp=False)  # tears down a stale "demo" first
    lab = Lab("demo").up(nodes=2, systemd=True, sftp=True)   # lb1, lb2 boot a real systemd (~1 s)
    lab.nodes                      # ["lb1", "lb2"] (+ "dc1")
    lab.address("lb2")             # "192.0.2.12"
    lab.address6("lb2")            # "2001:db8::12" (every node has both, on eth0)
    lab.shared                     # Path: same path on the host and in every node
    r = lab.exec("lb1", ["ip", "-j", "addr"])          # CompletedProcess[str], captured
    r = lab.exec("lb1", ["kinit", "alice"], input="pw\\n", check=False, timeout=30, cwd="/")
    p = lab.popen("lb2", ["python3", "-m", "http.server", "8080"])  # long-running; p.terminate()
    lab.wait_tcp("lb1", lab.address("lb2"), 8080)      # wait until it answers (from lb1)
    lab.write_file("lb1", "/etc/haproxy/haproxy.cfg", text, mode=0o644)
    lab.read_file("lb1", "/etc/haproxy/haproxy.cfg")
    reconcile(lab, "lb1", "--dry-run", "--repo", "desired-state")  # == lab.reconcile("lb1", ...)
    lab.netns("lb1")               # "demo-lb1": `ip -n demo-lb1 ...` from the host
    lab.pid("lb1")                 # host PID of the node's init: nsenter -t PID -n -m -u -i -p
    lab.init("lb1")                # "systemd" or "holder" (init-less)
    lab.enter_argv("lb1")          # the argv prefix that enters the node (nsenter; lxc-attach for systemd)
    lab.status()                   # dict: nodes, addresses, PIDs, init, alive, DC answers, SFTP server
    lab.sftp_server                # "lb2" when started with sftp=True (else None)
    lab.down()                     # idempotent; ends every process of the lab

    with temporary_lab(nodes=2, domain_controller=True) as lab:   # unique name, always down
        ...

`exec` raises `NodeCommandError` (a `subprocess.CalledProcessError` with node, stdout and
stderr in its message) when check=True and the command fails; `LabError` for lab problems.
`Lab(name)` in another process finds a running lab through /srv/reconcile-lab/<name>/lab.json.

pytest (tests/lab/conftest.py): fixtures `lab2`, `lab3`, `lab2_dc`, `lab2_systemd` (function
scope, each a fresh uniquely named lab, torn down even when the test fails; 2 nodes take
~0.1 s, 2 systemd nodes ~1.5 s, a DC ~2.5 s once its provisioned domain is cached) and
`make_lab(nodes, domain_controller, systemd)` for other shapes. Mark lab tests
`@pytest.mark.lab`.

Constants: `DOMAIN` "corp.example.test", `REALM`, `NETBIOS_DOMAIN` "CORP", `DC_NODE`,
`DC_ADDRESS`, `address6(ipv4)`, `ADMIN_USER` "Administrator", `ADMIN_PASSWORD`, `USERS` {user: password}
(alice, bob, carol), `GROUPS` {group: members} (alice in "app-admins" and "Domain Admins",
bob in "web users"; carol in none), `COROSYNC_AUTHKEY_FILE` (a random Corosync authkey, the
same in every node of a lab, mode 0400), `JOIN_PASSWORD_FILE` (holds ADMIN_PASSWORD, mode 0600,
in every node of a lab with a DC), `SFTP_USER` "files", `SFTP_PASSWORD`, `SFTP_FOLDER`,
`SFTP_PASSWORD_FILE`, `SFTP_KEY_FILE` (with sftp=True: sshd in the last lb node, SFTP only,
and the client key, password and host key in every node; see controller/lab/sftp.py),
`SUBNET`, `lb_address(i)`, `LAB_BASE`.

What a node is (see holder.py):
- Namespaces: net, mount, UTS, IPC, PID (its PID 1 is the holder: killing it ends the
  node). Not cgroup or user: processes are real root, cgroupfs is the host's.
- Files: overlayfs over /etc, /var, /home, /root (upper layers in
  /srv/reconcile-lab/<lab>/nodes/<node>/upper: the host's copies are read, never written);
  fresh tmpfs on /run, /tmp, /dev/shm, /mnt (mount points); its own /proc and /sys. Everything else (/usr,
  /srv, /opt, the checkout, the venv) is the host's, READ-ONLY in nodes, except
  `lab.shared` (read-write, same path). Files the host keeps in /tmp or /run are not
  visible in nodes: put them in `lab.shared`. /dev and /sys/fs/cgroup are the host's
  (writable). /proc/sys/net is per node; other sysctls are the host's: do not set them.
- Prepared: /etc/hostname, /etc/hosts (all nodes, with FQDNs when there is a DC),
  /etc/resolv.conf (the DC, or 127.0.0.1 which fails at once), /etc/machine-id,
  /etc/krb5.conf and the join password file with a DC, the SFTP server's host key (in
  /etc/ssh/ssh_known_hosts), the client key and password with sftp=True,
  /etc/lxc/lxc.conf (keeps LXC's cgroups under reconcile-lab/<lab>/ so `down` removes
  them), the /run folders systemd would create at boot, a system D-Bus (realm needs it).
  No other daemon runs (no systemd, no syslog: /dev/log does not exist, log to files or
  stderr) except samba in dc1 and, with sftp=True, sshd in the server node.
- Network: eth0 (veth to bridge br0 in namespace `<lab>-sw`), 192.0.2.0/24 and
  2001:db8::/64 (same last digits: 192.0.2.11 and 2001:db8::11), no default
  route, nothing in the host's network namespace. The host cannot reach nodes directly:
  reach a service from a node (`lab.wait_tcp`, a client run with `lab.exec`), or
  from the host with `nsenter`/`ip netns exec <lab>-lb1`.
- PATH in nodes starts with this installation's venv bin, so `reconcile` runs there.

What a systemd node is (`systemd=True`, `reconcile lab up --systemd`; see systemd_node.py):
lb1..lbN are LXC system containers booting Debian's systemd as PID 1, with the same name,
address, bridge, shared folder and Lab API as above. Their root is an overlay over the
host's whole `/` (read-only lower layer; the upper layer is a tmpfs inside the container's
mount namespace), so a write anywhere in the node stays in the node. The packages'
services run as on a fresh install (Corosync + Pacemaker with the one-node cluster
`debian`, HAProxy with Debian's file; keepalived and sssd waiting for a configuration);
units the host enabled that do not belong on an HA node (lxc-net, samba, timers, ssh...)
are masked. /mnt is an empty tmpfs as on init-less nodes, and /dev/fuse and /dev/autofs are
there, so FUSE mounts and systemd's mount and automount units work. With sftp=True the
server node runs sshd as a unit of its own systemd (`reconcile-lab-sftp.service`), never
Debian's ssh.service. Commands enter with lxc-attach (the node's control groups, its
capabilities).
dc1 stays an init-less node. `down` and `sweep_orphans` stop the containers (also when
their LXC monitors or the test run that made them were killed) and remove their control
groups; nothing is mounted on the host.
"""
from controller.lab.config import (  # noqa: F401
    ADMIN_PASSWORD, ADMIN_USER, COROSYNC_AUTHKEY_FILE, DC_ADDRESS, DC_NODE, DOMAIN, GROUPS, JOIN_PASSWORD_FILE,
    LAB_BASE, NETBIOS_DOMAIN, REALM, SFTP_FOLDER, SFTP_KEY_FILE, SFTP_PASSWORD, SFTP_PASSWORD_FILE, SFTP_USER,
    SUBNET, SUBNET6, USERS, address6, lb_address,
)
from controller.lab.lab import (  # noqa: F401
    Lab, LabError, NodeCommandError, NodeProcess, reconcile, sweep_orphans, temporary_lab,
)
