"""Corosync + Pacemaker: the Cluster and ClusterResource reconcilers and their languages.

Modules (each reads in one sitting):

- `corosync`    — corosync.conf: the model, render, parse, and which changes reload or restart
- `daemons`     — Corosync, corosync-qdevice and Pacemaker on a node; the Debian default cluster
- `cluster`     — the Cluster reconciler: corosync.conf, the authkey, the daemons, a fresh node
- `tools`       — Pacemaker's command-line tools: query, status, verify, simulate, patch
- `nvsets`      — name/value sets and rules (instance, meta, utilization, options, defaults)
- `cib`         — resources and constraints: manifest → normalized state → XML and back
- `cluster_cib` — the cluster-wide CIB (properties, defaults, alerts, fencing, tags, nodes)
- `derived`     — the resources other kinds become (a Pacemaker VirtualIP, a clustered Container)
- `ownership`   — what in a live CIB is reconcile's, the operator's or someone else's
- `candidate`   — one candidate CIB from the live one and a pass's changes
- `guard`       — the blast-radius guard: what a candidate may disrupt
- `secrets`     — parameters kept out of the CIB in Pacemaker's cibsecret layout
- `resources`   — the ClusterResource reconciler: one verified CIB patch per pass
- `health`      — quorum and where resources run, from crm_mon
- `importer`    — a CIB and corosync.conf → manifests (`reconcile import pacemaker`)
"""
