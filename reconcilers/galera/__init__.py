"""MariaDB Galera: each node's wsrep option file (`Galera` kind), and the small HTTP status
endpoint HAProxy checks (`reconcile-galera-status`, status.py). MariaDB itself runs under
Pacemaker (ocf:heartbeat:galera, a ClusterResource); nothing here starts or restarts it."""
from reconcilers.galera.reconciler import GaleraReconciler  # noqa: F401
