#!/usr/bin/env bash
# The README's main job (after scripts/install.sh): bring up a lab of real nodes on this
# machine (lb1 and lb2 boot a real systemd with Debian's packages as installed, dc1 is a
# Samba AD DC, lb2 serves SFTP for the Mount examples), show the plan for lb1 on the
# embedded desired-state/, apply it on every node and print what now runs. Run as root.
# The lab stays up afterwards.
#
# Only the lab itself must come up; every later step is shown whatever its exit code
# (reconcile exits 2 while changes are pending or a kind's reconciler is not built yet,
# 1 on an error), so the demo grows with the reconcilers and never fails on a missing one.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RECONCILE=${RECONCILE_VENV:-$ROOT/.venv}/bin/reconcile
export RECONCILE_LAB=${RECONCILE_LAB:-lab}
NODES=(lb1 lb2)
VIPS=(192.0.2.100 192.0.2.110)

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
# Run a command inside a lab node; the working folder (this checkout) is the same there.
node() { local n=$1; shift; "$RECONCILE" lab exec "$n" -- "$@"; }
# Show a step's exit code without stopping the demo.
shown() {
  "$@"
  local rc=$?
  case $rc in
    0) ;;
    2) echo "(exit 2: changes pending, or a kind whose reconciler is not built yet)" ;;
    *) echo "(exit $rc)" ;;
  esac
  return 0
}

if [[ ! -x $RECONCILE ]]; then
  echo "demo: $RECONCILE is missing; run: bash scripts/install.sh" >&2
  exit 1
fi

step "reconcile lab up --nodes ${#NODES[@]} --domain-controller --systemd --sftp   (lab '$RECONCILE_LAB')"
if ! "$RECONCILE" lab up --nodes "${#NODES[@]}" --domain-controller --systemd --sftp; then
  echo "demo: the lab did not come up" >&2
  exit 1
fi

step "inside lb1, freshly booted: what the Debian packages started"
shown node lb1 systemctl list-units --all --no-legend --plain --no-pager \
  corosync.service pacemaker.service haproxy.service keepalived.service sssd.service
shown node lb1 corosync-cmapctl -g totem.cluster_name

step "inside lb1: reconcile --dry-run --node lb1 --repo desired-state"
shown node lb1 reconcile --dry-run --node lb1 --repo desired-state

for n in "${NODES[@]}"; do
  wait=()
  # The last node completes the cluster: --wait returns once everything is Healthy (quorum,
  # resources running, the VIP held once, servers UP), so the HTTP check below just works.
  [[ $n == "${NODES[-1]}" ]] && wait=(--wait --timeout 3m)
  step "inside $n: reconcile apply --repo desired-state ${wait[*]}  (the node is its own machine: --node defaults to its host name)"
  shown node "$n" reconcile apply --repo desired-state "${wait[@]}"
done

step "inside lb1: reconcile --dry-run again: every object in sync (exit 0), and its health"
shown node lb1 reconcile --dry-run --repo desired-state

step "HTTP through the VIP 192.0.2.100, from lb2: / goes to the app backend, /api/ to api"
FETCH='
import sys, urllib.request
for path in sys.argv[1:]:
    with urllib.request.urlopen("http://192.0.2.100" + path, timeout=5) as r:
        print(f"GET {path} -> {r.status} {r.read().decode().strip()}")
'
shown node lb2 /usr/bin/python3 -c "$FETCH" / / / /api/

step "what runs now"
for vip in "${VIPS[@]}"; do
  holders=()
  for n in "${NODES[@]}"; do
    node "$n" ip -o -4 addr show 2>/dev/null | grep -qw "inet $vip" && holders+=("$n")
  done
  echo "$vip is held by: ${holders[*]:-nobody}"
done

# HAProxy's runtime API on its admin socket (socat is not installed: a few lines of Python).
SHOW_SERVERS='
import os, socket, sys
path = "/run/haproxy/admin.sock"
if not os.path.exists(path):
    sys.exit("no HAProxy admin socket (" + path + ")")
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(b"show servers state\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode().rstrip())
'
for n in "${NODES[@]}"; do
  echo "--- $n: systemd: $(node "$n" systemctl is-system-running 2>&1);" \
    "units: $(node "$n" systemctl is-active haproxy keepalived corosync pacemaker sssd | tr '\n' ' ')"
  echo "--- $n: HAProxy show servers state"
  shown node "$n" /usr/bin/python3 -c "$SHOW_SERVERS"
  echo "--- $n: lxc-ls -f"
  shown node "$n" lxc-ls -f
  echo "--- $n: Pacemaker (crm_mon -1)"
  shown node "$n" timeout 10 crm_mon -1
  echo "--- $n: realm list"
  shown node "$n" timeout 20 realm list
  echo "--- $n: adcli testjoin"
  shown node "$n" timeout 20 adcli testjoin --domain=corp.example.test
done

step "lb2's reports folder on lb1, through rclone (sftp remote, password) and sshfs (key), as mount units"
shown node lb1 sh -c 'findmnt -n -R -o TARGET,FSTYPE,SOURCE /mnt; head -n1 /mnt/reports/README.txt /mnt/reports-sshfs/README.txt'
shown node lb1 systemctl list-units --all --no-legend --plain --no-pager 'mnt-*'

step "the lab stays up"
"$RECONCILE" lab status
cat <<EOF

Enter a node:  $RECONCILE lab exec lb1 -- bash
Tear it down:  $RECONCILE lab down
EOF
