#!/usr/bin/env bash
# Install everything reconcile and its lab need on a fresh Debian 12 machine (root).
# Idempotent: a second run installs nothing new and only refreshes the virtualenv.
#
# System packages come from Debian (the real daemons the lab runs). No service is
# started by the package scripts: the lab starts its daemons inside its own namespaces,
# and nothing may bind to the host's real interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${RECONCILE_VENV:-$ROOT/.venv}

PACKAGES=(
  # HA daemons
  haproxy keepalived ipvsadm corosync pacemaker pacemaker-cli-utils pcs crmsh resource-agents
  # fencing (every stonith class; a BMC simulator and its client for fence_ipmilan in the lab) and
  # quorum devices (corosync-qdevice on the nodes, corosync-qnetd on a lab host)
  fence-agents openipmi ipmitool corosync-qdevice corosync-qnetd
  # containers
  lxc python3-lxc busybox-static
  # Active Directory
  samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind adcli sssd sssd-tools libnss-sss libpam-sss
  krb5-user ldb-tools bind9-dnsutils realmd
  # mounts: FUSE file systems (rclone, sshfs) and the sftp server lab nodes mount from
  fuse3 rclone sshfs openssh-server
  # Galera: MariaDB with the galera-4 provider (run by Pacemaker's ocf:heartbeat:galera in lab
  # nodes; Debian's unit is never started on this host: policy-rc.d), rsync for state transfers
  mariadb-server mariadb-client galera-4 rsync
  # plumbing
  sudo iproute2 iputils-ping procps psmisc util-linux git gnupg python3-venv python3-pip wrk
  # the drain's connection gate (reconcilers/keepalived/gate.py): a table of its own, never the service
  nftables
  # fault tests: stop lxc-create at a chosen system call (tests/lab/test_faults.py)
  strace
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  # Keep package maintainer scripts from starting daemons on the host.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  # openssh-server is only for sshd inside lab nodes (started there by the tests): Debian's
  # own marker keeps its unit and init script from ever starting sshd on this host, also
  # at the next boot. Only when this script installs it: an sshd already here is left alone.
  if [[ " ${missing[*]} " == *" openssh-server "* && ! -e /usr/sbin/sshd ]]; then
    mkdir -p /etc/ssh && touch /etc/ssh/sshd_not_to_be_run
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  ((created_policy)) && rm -f /usr/sbin/policy-rc.d
fi

# The venv is built from Debian's python3 with system site-packages: python3-lxc
# exists only for /usr/bin/python3.
if [[ ! -x $VENV/bin/python ]]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/pip" install -q -e "$ROOT[test]"
echo "install: ok ($VENV)"
