"""The pyinfra side of bench/bench_peers.py: what reconcile does for Corosync/Pacemaker,
keepalived and HAProxy on one node, as an operator would write it with pyinfra alone. Run inside a lab
node: PEERS_VARS=VARS pyinfra -y @local deploy.py.

The same templates and data as the ansible playbook. pyinfra's template operation has no
`validate`, so the file is checked by its daemon's checker right after it changed, before
the daemon is reloaded; a daemon is reloaded only when its file changed and it was running
before (a daemon started in this run reads the new file).
"""
import hashlib
import os

import yaml
from jinja2.ext import Extension
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

HERE = os.environ["PEERS_TEMPLATES"]
with open(os.environ["PEERS_VARS"]) as f:
    DATA = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class HashFilter(Extension):
    """Ansible's `hash` filter for pyinfra's Jinja environment: one template for both."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["hash"] = lambda text, name="sha1": hashlib.new(name, str(text).encode()).hexdigest()


def template(name: str, src: str, dest: str):
    jinja = {"trim_blocks": True, "lstrip_blocks": True, "extensions": [HashFilter]}
    return files.template(name=name, src=os.path.join(HERE, src), dest=dest, mode="644", jinja_env_kwargs=jinja,
                          **DATA)


cluster = DATA["cluster"]
if cluster is not None:
    spec = cluster["spec"]
    properties = {"stonith-enabled": "true" if spec["stonithEnabled"] else "false", **spec["properties"]}
    corosync_running = host.get_fact(File, path="/run/corosync.pid") is not None
    pacemaker_running = host.get_fact(File, path="/run/pacemakerd.pid") is not None
    conf = template("corosync.conf", "corosync.conf.j2", "/etc/corosync/corosync.conf")
    server.shell(name="corosync -t", commands=["corosync -t -c /etc/corosync/corosync.conf"], _if=conf.did_change)
    if corosync_running:
        server.shell(name="Reload Corosync", commands=["corosync-cfgtool -R"], _if=conf.did_change)
    else:
        server.shell(name="Start Corosync", commands=["corosync"])
    now = {}
    if pacemaker_running:
        now = {name: host.get_fact(Command, f"crm_attribute --type crm_config --name {name} --query --quiet || true")
               for name in properties}
    else:
        server.shell(name="Start Pacemaker (pacemakerd stays in the foreground)", commands=[
            "start-stop-daemon --start --quiet --background --make-pidfile --pidfile /run/pacemakerd.pid "
            "--exec /usr/sbin/pacemakerd",
            # 102: the CIB does not answer yet
            "for i in $(seq 150); do crm_attribute --type crm_config --name stonith-enabled --query >/dev/null 2>&1; "
            "[ $? -ne 102 ] && break; sleep 0.2; done"])
    for name, value in properties.items():
        if now.get(name) != value:
            server.shell(name=f"Cluster property {name}",
                         commands=[f"crm_attribute --type crm_config --name {name} --update {value}"])

haproxy = DATA["haproxy"]
if haproxy["frontends"] or haproxy["backends"]:
    running = host.get_fact(File, path="/run/haproxy.pid") is not None
    cfg = template("haproxy.cfg", "haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg")
    server.shell(name="haproxy -c", commands=["haproxy -c -q -f /etc/haproxy/haproxy.cfg"], _if=cfg.did_change)
    if running:
        server.shell(name="Reload HAProxy", commands=["pkill -USR2 -F /run/haproxy.pid"], _if=cfg.did_change)
    elif haproxy["frontends"]:
        server.shell(name="Start HAProxy (master-worker, as the Debian unit runs it)", commands=[
            "haproxy -W -D -S /run/haproxy-master.sock -p /run/haproxy.pid -f /etc/haproxy/haproxy.cfg"])

if DATA["keepalived"]["vips"]:
    running = host.get_fact(File, path="/run/keepalived.pid") is not None
    conf = template("keepalived.conf", "keepalived.conf.j2", "/etc/keepalived/keepalived.conf")
    server.shell(name="keepalived -t", commands=["keepalived -t -f /etc/keepalived/keepalived.conf"],
                 _if=conf.did_change)
    if running:
        server.shell(name="Reload keepalived", commands=["pkill -HUP -F /run/keepalived.pid"], _if=conf.did_change)
    else:
        server.shell(name="Start keepalived", commands=[
            "keepalived --use-file /etc/keepalived/keepalived.conf --pid /run/keepalived.pid "
            "--vrrp_pid /run/keepalived_vrrp.pid --checkers_pid /run/keepalived_checkers.pid"])
