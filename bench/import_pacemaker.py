"""bench_import.py's Pacemaker and Corosync hooks: the corpus samples (crm, pcs, XML,
corosync.conf) round-tripped through `reconcile import pacemaker` and `reconcile render`.

Pacemaker: the crm/pcs/XML samples are turned into CIBs by running their own commands
(pcs -f on a scratch CIB, crmsh with CIB_file) inside a one-node lab (no daemons run: the
tools only edit the file), kept when crm_verify finds them valid Pacemaker 2.1;
`reconcile import pacemaker CIB corosync.conf` writes the manifests, `reconcile render`
the CIB configuration, and `crm_diff` compares it with the original, with the
attribute-set order made canonical and the properties Pacemaker writes itself left out
(importer.comparable). A password the sample writes inline comes back as a cibsecret
reference (`lrm://`): the original with those values as references must then compare
equal. corosync.conf samples: import → render keeps every key (set comparison of the
parsed files).

`run` (pacemaker) and `run_corosync` return one import_common.Row per sample.
"""
from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.import_common import Row
from controller.lab import temporary_lab

ONLY = ""  # bench_import.py --only: the samples whose name holds it

# --- Pacemaker ----------------------------------------------------------------------------------

NODES3 = ["node1", "node2", "node3"]
COROSYNC = """\
totem {{
    version: 2
    cluster_name: {name}
    transport: knet
    crypto_cipher: none
    crypto_hash: none
}}
nodelist {{
{nodes}}}
quorum {{
    provider: corosync_votequorum
}}
"""

# What each sample's own commands say, against a scratch CIB ($CIB) with the nodes they
# name. `pcs -f` never touches a live cluster; crmsh is given CIB_file. Agents the lab
# does not have (DRBD, PAF, SAP, ...) are forced: the CIB stays valid Pacemaker 2.1.
# (pcs 0.11.5's `resource promotable` ignores --force when the agent is missing: those samples
# say `promotable` in `resource create`, which makes the same XML.)
PCS = "pcs -f $CIB"
CONVERSIONS: dict[str, dict] = {
    "002-josedom24-escenarios-HA-drbd.sh": {"nodes": ["node1", "node2"], "pcs": [
        "resource create WebData ocf:linbit:drbd drbd_resource=wwwdata op monitor interval=60s "
        "promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true --force",
        "resource create WebFS Filesystem device=/dev/drbd1 directory=/var/www/html fstype=xfs",
        "constraint colocation add WebFS with WebData-clone INFINITY with-rsc-role=Master",
        "constraint order promote WebData-clone then start WebFS",
        "resource create WebSite ocf:heartbeat:apache --force",  # the sample colocates it before creating it
        "constraint colocation add WebSite with WebFS INFINITY",
        "constraint order WebFS then WebSite"]},
    "004-seriesninefournine-linux-basic-2021_FP.bash": {"nodes": ["node01.local", "node02.local"], "pcs": [
        "property set stonith-enabled=false",
        "property set no-quorum-policy=ignore",
        "resource create virtualip ocf:heartbeat:IPaddr2 ip=192.168.10.100 cidr_netmask=24 "
        "clusterip_hash=sourceip-sourceport op monitor interval=10s",
        "resource create nginx ocf:heartbeat:nginx configfile=/etc/nginx/nginx.conf op monitor interval=5s timeout=5s",
        "resource clone nginx",
        "constraint colocation add virtualip with nginx-clone",
        "constraint order start nginx-clone then start virtualip"]},
    "006-ClusterLabs-pacemaker-cfs-config.rst": {"nodes": ["pcmk-1", "pcmk-2"], "pcs": [
        # the recap's `pcs config`, as the commands of Clusters from Scratch that make it
        "property set no-quorum-policy=freeze stonith-enabled=true",
        "resource defaults update resource-stickiness=100",
        "resource op defaults update timeout=240s",
        "stonith create fence_dev fence_ipmilan 'pcmk_delay_base=pcmk-1:5s;pcmk-2:0s' "
        "'pcmk_host_map=pcmk-1:almalinux9-1;pcmk-2:almalinux9-2' op monitor interval=60s --force",
        "resource create ClusterIP ocf:heartbeat:IPaddr2 ip=192.168.122.120 cidr_netmask=24 op monitor interval=30s",
        "resource create WebSite ocf:heartbeat:apache configfile=/etc/httpd/conf/httpd.conf "
        "statusurl=http://localhost/server-status op monitor interval=1min",
        "resource create WebData ocf:linbit:drbd drbd_resource=wwwdata op monitor interval=60s "
        "promotable promoted-max=2 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true --force",
        "resource create dlm --group locking ocf:pacemaker:controld op monitor interval=60s",
        "resource clone locking interleave=true",
        "resource create WebFS Filesystem device=/dev/drbd1 directory=/var/www/html fstype=gfs2",
        "resource clone WebFS",
        "constraint location WebSite prefers pcmk-2=50",
        "constraint order ClusterIP then WebSite",
        "constraint order promote WebData-clone then start WebFS-clone",
        "constraint order WebFS-clone then WebSite",
        "constraint order locking-clone then WebFS-clone",
        "constraint colocation add WebSite with ClusterIP INFINITY",
        "constraint colocation add WebFS-clone with WebData-clone INFINITY with-rsc-role=Promoted",
        "constraint colocation add WebSite with WebFS-clone INFINITY",
        "constraint colocation add WebFS-clone with locking-clone INFINITY"]},
    "008-linux-system-roles-ha_cluster-resources.yml": {"nodes": ["node1", "node2"], "pcs": [
        # what the role's variables make: primitives, groups, clones (the bundle is left out)
        "stonith create xvm-fencing fence_xvm 'pcmk_host_list=node1 node2' --force",
        "resource create simple-resource ocf:pacemaker:Dummy",
        "resource create resource-with-options ocf:pacemaker:Dummy fake=fake-value passwd=passwd-value "
        "meta target-role=Started is-managed=true op start timeout=30s op monitor timeout=5 interval=1min",
        "resource create dmy-1 ocf:pacemaker:Dummy", "resource create dmy-2 ocf:pacemaker:Dummy",
        "resource create dmy-3 ocf:pacemaker:Dummy", "resource create simple-clone ocf:pacemaker:Dummy",
        "resource group add simple-group dmy-1 dmy-2", "resource meta simple-group target-role=Started is-managed=true",
        "resource group add cloned-group dmy-3",
        "resource clone simple-clone",
        "resource clone cloned-group promotable=true --force"],
        # pcs 0.11.5 ignores --force for a promotable clone of Dummy with its own id: the XML it would write
        "cibadmin": ['<clone id="custom-clone-id"><primitive id="clone-with-options" class="ocf" '
                     'provider="pacemaker" type="Dummy"/><meta_attributes id="custom-clone-id-meta_attributes">'
                     '<nvpair id="custom-clone-id-meta_attributes-clone-max" name="clone-max" value="2"/>'
                     '<nvpair id="custom-clone-id-meta_attributes-clone-node-max" name="clone-node-max" value="1"/>'
                     '<nvpair id="custom-clone-id-meta_attributes-promotable" name="promotable" value="true"/>'
                     '</meta_attributes></clone>']},
    "010-lilingxing20-openstack-ha-compute.sh": {"nodes": ["controller1", "computer200", "computer201"], "pcs": [
        "resource create haproxy systemd:haproxy clone", "resource create galera systemd:mariadb clone",
        "resource create rabbitmq systemd:rabbitmq-server clone",
        "resource create openstack-nova-conductor systemd:openstack-nova-conductor clone",
        "resource create neutron-server systemd:neutron-server clone",
        "resource create nova-evacuate ocf:openstack:NovaEvacuate auth_url=http://keystone:5000/v3 username=admin "
        "password=secret tenant_name=admin domain=localdomain op start timeout=300 monitor interval=10 timeout=600 "
        "--force",
        "constraint order start haproxy-clone then nova-evacuate",
        "constraint order start galera-clone then nova-evacuate",
        "constraint order start rabbitmq-clone then nova-evacuate",
        "node attribute controller1 osprole=controller",
        "node attribute computer200 osprole=compute", "node attribute computer201 osprole=compute",
        "resource create neutron-openvswitch-agent-compute systemd:neutron-openvswitch-agent op start interval=0s "
        "timeout=200s stop interval=0s timeout=200s monitor interval=60s clone interleave=true",
        "constraint location neutron-openvswitch-agent-compute-clone rule resource-discovery=exclusive score=0 "
        "osprole eq compute",
        "constraint order start neutron-server-clone then neutron-openvswitch-agent-compute-clone require-all=false",
        "resource create libvirtd-compute systemd:libvirtd clone interleave=true",
        "constraint location libvirtd-compute-clone rule resource-discovery=exclusive score=0 osprole eq compute",
        "constraint order start neutron-openvswitch-agent-compute-clone then libvirtd-compute-clone",
        "constraint colocation add libvirtd-compute-clone with neutron-openvswitch-agent-compute-clone",
        "stonith create ipmilan-computer-200 fence_ipmilan pcmk_host_list=computer200 ipaddr=172.30.240.8 login=root "
        "passwd=calvin lanplus=1 cipher=1 op monitor interval=60s --force",
        "stonith create fence-nova fence_compute --force",
        "property set cluster-recheck-interval=1min",
        "stonith level add 1 computer200 ipmilan-computer-200,fence-nova",
        "property set stonith-enabled=true"]},
    "012-atraides-SAPstart-CRM-setup.crm": {"nodes": ["ssnpve001", "ssnpve002"], "crm": "file"},
    "014-ClusterLabs-PAF-quickstart-centos7.md": {"nodes": ["srv1", "srv2", "srv3"], "pcs": [
        "property set no-quorum-policy=ignore",
        "resource defaults update migration-threshold=5",
        "resource defaults update resource-stickiness=INFINITY",
        *[f"stonith create fence_vm_{n} fence_virsh pcmk_host_check=static-list pcmk_host_list={n} "
          f"ipaddr=192.168.122.1 login=root port={n}-centos7 action=off identity_file=/root/.ssh/id_rsa --force"
          for n in ("srv1", "srv2", "srv3")],
        *[f"constraint location fence_vm_{n} avoids {n}=INFINITY" for n in ("srv1", "srv2", "srv3")],
        "resource create pgsqld ocf:heartbeat:pgsqlms bindir=/usr/pgsql-9.3/bin pgdata=/var/lib/pgsql/9.3/data "
        "op monitor interval=9s role=Master op monitor interval=10s role=Slave "
        "promotable pgsql-ha master-max=1 master-node-max=1 clone-max=3 clone-node-max=1 notify=true --force",
        "resource create pgsql-master-ip ocf:heartbeat:IPaddr2 ip=192.168.122.50 cidr_netmask=24 "
        "op monitor interval=10s",
        "constraint colocation add pgsql-master-ip with master pgsql-ha INFINITY",
        "constraint order promote pgsql-ha then start pgsql-master-ip symmetrical=false",
        "constraint order demote pgsql-ha then stop pgsql-master-ip symmetrical=false",
        "constraint location pgsql-ha prefers srv1=1"]},
    # crmsh 4.4.1 fails on `node NAME attributes ...` with CIB_file (NameError cibadmin_opt):
    # the sample's node attributes are set with crm_attribute, its other statements with crm
    # and the properties Pacemaker 1.1 wrote itself (dc-version, cluster-infrastructure=cman, which
    # the 2.1 schema refuses) are left out: Pacemaker writes its own
    "016-lefred-vagrant-prm-gtid.crm": {"nodes": ["node1", "node2", "node3"], "crm": "file", "skip_node_lines": True,
                                        "drop_lines": ["dc-version=", "cluster-infrastructure="],
                                        "crm_attribute": [
        f"-N node{i} --type nodes --name {name} --update {value}" for i, ip in ((1, 2), (2, 3), (3, 4))
        for name, value in (("p_mysql_mysql_master_IP", f"192.168.80.{ip}"), ("standby", "off"))]},
    "018-FlocksCM-snow-ci.sh": {"nodes": ["snow01", "snow02"], "crm_attribute": [
        "-N snow01 --type op_defaults --attr-name timeout --attr-value 120s"], "crm": """\
primitive deploy01 ocf:heartbeat:Xen params xmfile="/sNow/snow-tools/etc/domains/deploy01.cfg" \\
  op monitor interval="40s" meta target-role="started" allow-migrate="true"
primitive monitor01 ocf:heartbeat:Xen params xmfile="/sNow/snow-tools/etc/domains/monitor01.cfg" \\
  op monitor interval="40s" meta target-role="started" allow-migrate="true"
"""},
    "020-MicrosoftDocs-sql-docs-ag-sles.md": {"nodes": ["SLES1", "SLES2"], "crm": """\
primitive ag_cluster ocf:mssql:ag params ag_name="ag1" op monitor interval="10" role="Master" \\
  op monitor interval="11" role="Slave"
ms ms-ag_cluster ag_cluster meta master-max="1" master-node-max="1" clone-max="2" clone-node-max="1" notify="true"
primitive admin_addr ocf:heartbeat:IPaddr2 params ip=192.0.2.50 cidr_netmask=24 op monitor interval="12s"
colocation vip_on_master inf: admin_addr ms-ag_cluster:Master
order ag_first inf: ms-ag_cluster:promote admin_addr:start
"""},
    "022-SUSE-saphanabootstrap-formula.j2": {"nodes": ["hana01", "hana02"], "crm": """\
rsc_defaults resource-stickiness="1000" migration-threshold="5000"
op_defaults timeout="600"
property $id="cib-bootstrap-options" stonith-enabled="true" concurrent-fencing=true
primitive rsc_azure_stonith_PRD_HDB00 stonith:fence_azure_arm params subscriptionId=0000 resourceGroup=rg \\
  tenantId=1111 login=2222 passwd="client-secret" pcmk_monitor_retries=4 pcmk_action_limit=3 power_timeout=240 \\
  pcmk_reboot_timeout=900 op monitor interval=3600 timeout=120 meta target-role=Started
primitive rsc_socat_PRD_HDB00 azure-lb params port=62500 op monitor timeout="20" interval="10" depth="0" \\
  meta resource-stickiness=0
primitive rsc_ip_PRD_HDB00 ocf:heartbeat:IPaddr2 params ip=10.0.0.12 cidr_netmask=32 op monitor interval=10s \\
  timeout=20s
group g_ip_PRD_HDB00 rsc_ip_PRD_HDB00 rsc_socat_PRD_HDB00
primitive rsc_SAPHanaTopology_PRD_HDB00 ocf:suse:SAPHanaTopology params SID="PRD" InstanceNumber="00" \\
  op monitor interval="10" timeout="600" op start interval="0" timeout="600" op stop interval="0" timeout="300"
clone cln_SAPHanaTopology_PRD_HDB00 rsc_SAPHanaTopology_PRD_HDB00 meta is-managed="true" clone-node-max="1" \\
  interleave="true"
primitive rsc_SAPHana_PRD_HDB00 ocf:suse:SAPHana params SID="PRD" InstanceNumber="00" PREFER_SITE_TAKEOVER="true" \\
  AUTOMATED_REGISTER="false" DUPLICATE_PRIMARY_TIMEOUT="7200" op start interval="0" timeout="3600" \\
  op stop interval="0" timeout="3600" op promote interval="0" timeout="3600" \\
  op monitor interval="60" role="Master" timeout="700" op monitor interval="61" role="Slave" timeout="700"
ms msl_SAPHana_PRD_HDB00 rsc_SAPHana_PRD_HDB00 meta clone-max="2" clone-node-max="1" interleave="true"
colocation col_saphana_ip_PRD_HDB00 4000: g_ip_PRD_HDB00:Started msl_SAPHana_PRD_HDB00:Master
order ord_SAPHana_PRD_HDB00 Optional: cln_SAPHanaTopology_PRD_HDB00 msl_SAPHana_PRD_HDB00
"""},
}


def _corosync(name: str, nodes: list[str]) -> str:
    body = "".join(f"    node {{\n        ring0_addr: 192.0.2.{11 + i}\n        name: {n}\n        nodeid: {i + 1}\n"
                   f"    }}\n" for i, n in enumerate(nodes))
    return COROSYNC.format(name=name, nodes=body)


def _crm_text(sample: Path, conversion: dict) -> str:
    text = conversion["crm"] if conversion["crm"] != "file" else sample.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")
             and not any(d in ln for d in conversion.get("drop_lines", ()))]
    if conversion.get("skip_node_lines"):
        out, skipping = [], False
        for ln in lines:
            skipping = ln.startswith("node ") or (skipping and ln[:1] in "\t ")
            if not skipping:
                out.append(ln)
        lines = out
    return "\n".join(lines).replace("ß", "") + "\ncommit\n"


def convert(lab, sample: Path, conversion: dict, work: Path) -> Path | str:
    """The sample's CIB (a file in `work`), or why it could not be made."""
    cib = work / "cib.xml"
    nodes = "".join(f'<node id="{i + 1}" uname="{n}"/>' for i, n in enumerate(conversion["nodes"]))
    script = [f"cibadmin --empty > {cib}", f"CIB_file={cib} cibadmin --replace --scope nodes --xml-text "
                                           f"{shlex.quote('<nodes>' + nodes + '</nodes>')}"]
    script += [f"{PCS.replace('$CIB', str(cib))} {cmd}" for cmd in conversion.get("pcs", [])]
    script += [f"CIB_file={cib} crm_attribute {a}" for a in conversion.get("crm_attribute", [])]
    script += [f"CIB_file={cib} cibadmin --create --scope resources --xml-text {shlex.quote(x)}"
               for x in conversion.get("cibadmin", [])]
    if "crm" in conversion:
        (work / "config.crm").write_text(_crm_text(sample, conversion))
        script.append(f"CIB_file={cib} crm -F configure < {work / 'config.crm'}")
    for line in script:
        r = lab.exec("lb1", ["sh", "-c", line], check=False, timeout=120)
        if r.returncode != 0:
            return f"`{line.split(' ', 4)[-1][:70]}…` failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    r = lab.exec("lb1", ["crm_verify", "--xml-file", str(cib), "-V"], check=False)
    from reconcilers.pacemaker.tools import parse_verify

    errors = parse_verify(r.returncode, r.stderr + r.stdout, str(cib), missing_stonith_ok=True)
    if errors:  # (a sample that sets up no fencing device is still valid Pacemaker)
        return "not valid Pacemaker 2.1: " + errors[0]
    return cib


def run(folder: Path) -> list[Row]:
    """bench_import.py --tool pacemaker: one Row per sample of `folder`. keys: the elements
    of the original configuration; kept: all of them when crm_diff finds no difference
    (else minus the changes it lists); native: crm_verify on the original and on the
    rendering."""
    from reconcilers.pacemaker.importer import comparable
    from reconcilers.pacemaker.nvsets import LRM_MAGIC

    rows: list[Row] = []
    with temporary_lab(nodes=1, prefix="bim") as lab:
        for sample in sorted(folder.iterdir()):
            if ONLY and ONLY not in sample.name:
                continue
            conversion = CONVERSIONS.get(sample.name)
            if conversion is None:
                rows.append(Row(sample.name, False, notes=["no conversion written for it"]))
                continue
            work = lab.shared / sample.stem
            work.mkdir()
            made = convert(lab, sample, conversion, work)
            if isinstance(made, str):
                rows.append(Row(sample.name, False, notes=[f"not converted: {made}"]))
                continue
            (work / "corosync.conf").write_text(_corosync("corpus", conversion["nodes"]))
            imported = work / "imported"
            r = lab.exec("lb1", ["reconcile", "import", "pacemaker", str(made), str(work / "corosync.conf"),
                                 "--output-dir", str(imported), "--secrets-dir", str(work / "secrets")], check=False)
            if r.returncode != 0:
                rows.append(Row(sample.name, False, notes=[f"import: {r.stderr.strip()[-200:]}"]))
                continue
            notes = [ln[6:] for ln in r.stderr.splitlines() if ln.startswith("note: ")]
            node = conversion["nodes"][0]
            rendered = work / "rendered"
            r = lab.exec("lb1", ["reconcile", "render", "--repo", str(imported), "--node", node, "--output-dir",
                                 str(rendered)], check=False)
            original = ET.parse(made).getroot().find("configuration")
            keys = len(list(comparable(original).iter()))
            if r.returncode != 0:
                rows.append(Row(sample.name, True, keys, 0, "ok", "", [r.stderr.strip().replace("\n", " ")[-300:]]))
                continue
            back = ET.parse(rendered / "pacemaker" / "cib-configuration.xml").getroot()
            # a password written inline is never copied: it comes back as a cibsecret
            # reference (`lrm://`), so the original is compared with those values as references
            secrets = {tuple(n.split(": parameter ", 1)[0:1] + n.split(": parameter ", 1)[1].split(" ", 1)[0:1])
                       for n in notes if "held a password inline" in n}
            referenced = comparable(original)
            for rsc in referenced.iter():
                for nv in rsc.findall("instance_attributes/nvpair") if rsc.get("id") else ():
                    if (rsc.get("id"), nv.get("name")) in secrets:
                        nv.set("value", LRM_MAGIC)
            diff = _crm_diff(lab, work, referenced, comparable(back))
            changes = [ln for ln in diff.splitlines() if "<change " in ln] or ([diff] if diff else [])
            said = [f"{len(secrets)} inline password(s) became cibsecret references"] if secrets else []
            if diff:
                said.append(_summary(diff))
                if ONLY:
                    print(diff)
            rows.append(Row(sample.name, True, keys, max(keys - len(changes), 0), "ok",
                            _verify(lab, work / "compare-b.xml"), said))
    return rows


def _verify(lab, path: Path) -> str:
    from reconcilers.pacemaker.tools import parse_verify

    r = lab.exec("lb1", ["crm_verify", "--xml-file", str(path), "-V"], check=False)
    errors = parse_verify(r.returncode, r.stderr + r.stdout, str(path), missing_stonith_ok=True)
    return "ok" if not errors else errors[0][:60]


def _crm_diff(lab, work: Path, a: ET.Element, b: ET.Element) -> str:
    paths = []
    for name, conf in (("a", a), ("b", b)):
        cib = ET.Element("cib", {"admin_epoch": "0", "epoch": "1", "num_updates": "0", "validate-with": "pacemaker-3.9"})
        cib.append(conf)
        ET.SubElement(cib, "status")
        path = work / f"compare-{name}.xml"
        path.write_bytes(ET.tostring(cib))
        paths.append(str(path))
    r = lab.exec("lb1", ["crm_diff", "-o", paths[0], "-n", paths[1]], check=False)
    return "" if r.returncode == 0 else r.stdout


def _summary(diff: str) -> str:
    changes = [ln.strip() for ln in diff.splitlines() if "<change " in ln]
    if not changes:
        return " ".join(diff.split())[:300]
    return "; ".join(c[:140] for c in changes[:3]) + (f" (+{len(changes) - 3})" if len(changes) > 3 else "")


def run_corosync(folder: Path) -> list[Row]:
    """bench_import.py --tool corosync: every key of each corosync.conf (section path and
    value) found again after import and render (the importer's parse and the Cluster's
    render, in-process); corosync -t needs the nodes' own addresses, so no native check."""
    from reconcilers.pacemaker import corosync

    rows: list[Row] = []
    for sample in sorted(folder.iterdir()):
        if ONLY and ONLY not in sample.name:
            continue
        text = sample.read_text()
        if sample.suffix == ".rst":
            text = "\n".join(ln[8:] for ln in text.splitlines() if ln.startswith("        "))
        original = corosync.parse(text)
        keys = {k for k in _keys(original) if k[0] != "totem.keyfile"}
        settings = corosync.observed_settings(original)
        try:
            again = corosync.parse(corosync.render(settings, "wait_for_all" in corosync._first(original, "quorum"),
                                                   header=False))
        except Exception as err:  # a value the renderer refuses
            rows.append(Row(sample.name, False, len(keys), notes=[str(err)[:200]]))
            continue
        lost = keys - _keys(again)
        rows.append(Row(sample.name, True, len(keys), len(keys) - len(lost),
                        notes=[f"lost: {sorted(lost)[:4]}"] if lost else []))
    return rows


def _keys(tree: dict, prefix: str = "") -> set:
    out = set()
    for name, sections in tree.items():
        for section in sections:
            for k, v in section.items():
                out |= _keys({k: v}, f"{prefix}{name}.") if isinstance(v, list) else {(f"{prefix}{name}.{k}", v)}
    return out
