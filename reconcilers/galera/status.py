"""`reconcile-galera-status`: a small HTTP endpoint that says whether this Galera node may
take traffic, for HAProxy's `option httpchk` (the clustercheck pattern).

    200  the node is Synced (wsrep_local_state 4) in a Primary component, wsrep_ready ON
    503  anything else: Donor/Desynced (2), Joining/Joined (1, 3), non-Primary, or mysqld
         not answering (stopped, hung: the query has a 2 s limit)

Why HTTP and not HAProxy's own checks: `mysql-check` only sees that mysqld answers a
handshake, which a Donor or a node cut off in a non-Primary component still does; an
agent-check is ignored by HAProxy when the agent cannot be reached, so a dead agent would
leave a Desynced node in the pool. An HTTP check fails closed: no answer is DOWN.

It asks mysqld over its local socket as the OS user it runs as (root under Pacemaker:
MariaDB's unix_socket authentication, no password anywhere). `--donor-ok` keeps a Donor
in service (for a pool that tolerates a Donor's stale-free but slower reads).
Run it where mysqld runs, e.g. as a Pacemaker clone of ocf:heartbeat:anything.
Standard library only; the one command it runs is the `mariadb` client, as an argv list.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY = ("SHOW GLOBAL STATUS WHERE Variable_name IN "
         "('wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_ready')")
SYNCED, DONOR = "4", "2"


def judge(status: dict[str, str], donor_ok: bool = False) -> tuple[bool, str]:
    """(may take traffic, why) from SHOW STATUS's wsrep variables (pure)."""
    state = status.get("wsrep_local_state", "")
    comment = status.get("wsrep_local_state_comment", "unknown")
    if status.get("wsrep_cluster_status") != "Primary":
        return False, f"not in a Primary component ({status.get('wsrep_cluster_status', 'unknown')})"
    if status.get("wsrep_ready") != "ON":
        return False, "wsrep_ready is OFF"
    if state == SYNCED or (donor_ok and state == DONOR):
        return True, comment
    return False, comment


def parse(output: str) -> dict[str, str]:
    """`mariadb -N -B` output: one `name<TAB>value` per line."""
    return dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)


def read_status(client: str, socket: str | None) -> dict[str, str] | str:
    argv = [client, "-N", "-B", "--connect-timeout=2", "-e", QUERY] + ([f"--socket={socket}"] if socket else [])
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"mysqld does not answer: {err}"
    if r.returncode != 0:
        return f"mysqld does not answer: {(r.stderr or r.stdout).strip()[:200]}"
    return parse(r.stdout)


def handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            found = read_status(args.client, args.socket)
            ok, why = (False, found) if isinstance(found, str) else judge(found, args.donor_ok)
            body = f"Galera node is {why}\n".encode() if ok else f"Galera node is not ready: {why}\n".encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET
        do_OPTIONS = do_GET

        def log_message(self, format: str, *a: object) -> None:  # checks every second: no log line each
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reconcile-galera-status", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: every address)")
    p.add_argument("--socket", default=None, help="mysqld's socket (default: the client's)")
    p.add_argument("--client", default="mariadb", help="the client program (default: mariadb)")
    p.add_argument("--donor-ok", action="store_true", help="a Donor/Desynced node still answers 200")
    args = p.parse_args(argv)
    server = ThreadingHTTPServer((args.bind, args.port), handler(args))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
