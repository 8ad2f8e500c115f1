"""Mount: file systems mounted where the manifests say, on the nodes they name.

FUSE file systems (rclone with any of its backends — Google Drive, sftp, S3, WebDAV … —
and sshfs) and the kernel's own (nfs, cifs, bind, tmpfs where the node supports them),
with their options, the owner and mode of the mounted root, and credentials given by
reference only: reconcile reads them at apply time and writes them 0600 in the mount's own
folder where the tool reads them (an rclone config, an ssh identity, a cifs credentials
file), never into argv, plans, logs or status.

- `model`: what one mount is (its options per type, its desired state), pure functions;
- `render`: systemd units, an fstab line, mount/umount argv, the files the tools read;
- `observe`: /proc/self/mountinfo (one read), one `stat` of the mount points (dead FUSE
  mounts, hung servers), reconcile's records of what it mounted;
- `credentials`: the 0600 files and their comparison (only a token leaves);
- `fuse`: rclone as native validator and obscurer, finding FUSE daemons, the mount helper;
- `apply`: mount, remount, unmount one mount (with or without systemd);
- `reconciler`: the contract, thin.

Without systemd (the lab today), mounts are made directly and each FUSE tool runs as its
own detached daemon (`rclone mount --daemon`, which returns once the mount is up; sshfs
forks after mounting): the mount outlives `reconcile apply` and agent restarts, no
supervisor of ours has to stay alive, and the tool's exit status is the mount's. The
agent's `watch()` follows each daemon with a pidfd and the mount table with poll(), so a
crashed daemon triggers a run at once, which unmounts the dead mount and mounts it again.
With systemd, mount (and automount) units make the mount come back at boot.
"""
from reconcilers.mount.reconciler import MountReconciler

__all__ = ["MountReconciler"]
