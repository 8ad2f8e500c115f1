"""Corosync + Pacemaker: the Cluster and ClusterResource reconcilers and their languages.

Modules (each reads in one sitting):

- `corosync`  — corosync.conf: the model, render, parse, and which changes reload or restart
- `cluster`   — the Cluster reconciler: corosync.conf, the authkey, the daemons, a fresh node
- `tools`     — Pacemaker's command-line tools: query, status, verify, simulate, patch
- `cib`       — the CIB vocabulary: manifest → normalized state → XML and back
- `resources` — the ClusterResource reconciler: one verified CIB patch per pass
- `importer`  — a CIB and corosync.conf → manifests (`reconcile import pacemaker`)
"""
