"""Where the agent's manifests come from: a git repository, followed commit by commit.

`GitSource` keeps a mirror clone (GitPython) in the state folder and answers three
questions for the agent:

- which commit does the followed ref name now? (`head()`: a cheap check — the local
  repository's refs read in-process, or one `git ls-remote` — before any fetch)
- is that commit signed by a key of the operator's keyring? (`verify()`)
- what are the manifests at exactly that commit? (`export()`: `git archive` of the commit
  into its own folder, never a working tree that moves under the loader)

A local repository (a path on this machine) is watched for ref changes with watchfiles and
reacted to at once (`changes()`); a remote one is polled with jitter (`poll()`). A fetch
mirrors every ref with force, so a history rewrite (force push) is followed like any
other commit.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Iterator

import git

from reconcilers.base import CommandError, Runner

log = logging.getLogger("reconcile.source")

SHA_RE = re.compile(r"[0-9a-f]{40}")
GIT_TIMEOUT = 120.0
# No prompt may ever block the agent: a missing credential is an error in the status.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
           "GIT_SSH_COMMAND": "ssh -o BatchMode=yes", "LC_ALL": "C"}


class SourceError(Exception):
    """The source cannot give a usable revision. `reason` is a stable word for status and
    metrics (Flux's reasons): GitOperationFailed, VerificationFailed, ArtifactFailed."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Revision:
    """One commit, exported: `root` is the manifest folder at exactly `sha`."""

    sha: str
    root: Path


def is_remote(url: str) -> bool:
    """A URL (scheme://, or scp-like user@host:path) is polled; a local path is watched."""
    return "://" in url or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


def safe_url(url: str) -> str:
    """The URL without a password, for logs and status."""
    return re.sub(r"://([^/@:]+):[^/@]*@", r"://\1:***@", url)


class GitSource:
    """A git repository (`url`: a local path or a remote URL) followed at `ref`.

    `ref` is a branch, a tag or a full commit id; None follows the repository's HEAD.
    `path` is the folder of manifests inside the repository. `keyring` (a file of exported
    public keys, or a GnuPG home folder) turns on signature verification.
    """

    def __init__(self, url: str, state_dir: Path, *, ref: str | None = None, path: str = ".",
                 keyring: Path | None = None):
        self.remote = is_remote(url)
        self.url = url if self.remote else str(Path(url).resolve())
        self.ref = ref
        self.path = path.strip("/") or "."
        self.keyring = keyring
        self.home = Path(state_dir) / "source"
        self.mirror_path = self.home / "mirror.git"
        self.exports = self.home / "revisions"
        self.runner = Runner(default_timeout=GIT_TIMEOUT)
        self._mirror: git.Repo | None = None
        self._local: git.Repo | None = None
        self._have: set[str] = set()
        self.last_synced: str | None = None
        self._gnupg_home: Path | None = None
        self._lock = threading.Lock()  # the poller thread and the main loop both ask head()

    # --- set-up ------------------------------------------------------------------------

    def open(self) -> None:
        """Clone the mirror if needed and prepare the keyring. Raises SourceError."""
        if not self.remote:
            try:
                self._local = git.Repo(self.url, search_parent_directories=True)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                raise SourceError("GitOperationFailed", f"{self.url} is not in a git repository (the agent "
                                  "follows commits; for a plain folder use `reconcile apply`)") from None
            top = self._local.working_tree_dir if not self._local.bare else self._local.git_dir
            if top is not None and Path(top).resolve() != Path(self.url):
                # --repo names a folder inside a work tree: follow the repository, read that folder
                inside = str(Path(self.url).relative_to(Path(top).resolve()))
                self.path = inside if self.path == "." else f"{inside}/{self.path}"
                self.url = str(Path(top).resolve())
        # Exports are keyed by commit only: an agent restarted with another --path must not
        # reuse them, and they are cheap to make again.
        shutil.rmtree(self.exports, ignore_errors=True)
        self.exports.mkdir(parents=True, exist_ok=True)
        self._open_mirror()
        if self.keyring is not None:
            self._gnupg_home = self._prepare_keyring(self.keyring)

    def _open_mirror(self) -> None:
        try:
            repo = git.Repo(self.mirror_path)
            if repo.remotes.origin.url != self.url:
                repo.git.remote("set-url", "origin", self.url, env=self._env())
            self._mirror = repo
            return
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, AttributeError, ValueError):
            shutil.rmtree(self.mirror_path, ignore_errors=True)  # half-cloned by a killed agent
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.home))
        try:
            git.Repo.clone_from(self.url, tmp / "m.git", mirror=True, env=self._env(),
                                kill_after_timeout=GIT_TIMEOUT)
            os.rename(tmp / "m.git", self.mirror_path)
        except git.GitCommandError as err:
            raise SourceError("GitOperationFailed", f"cannot clone {safe_url(self.url)}: {_git_error(err)}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._mirror = git.Repo(self.mirror_path)

    def _env(self) -> dict[str, str]:
        env = dict(GIT_ENV)
        if not self.remote:  # the operator's own repository may belong to another user
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
        return env

    @property
    def mirror(self) -> git.Repo:
        if self._mirror is None:
            self.open()
        assert self._mirror is not None
        return self._mirror

    # --- which commit ------------------------------------------------------------------

    def describe(self) -> str:
        return f"{safe_url(self.url)}@{self.ref or 'HEAD'}"

    def head(self) -> str:
        """The commit the ref names at the source now: cheap, fetches nothing."""
        with self._lock:
            if self.ref is not None and SHA_RE.fullmatch(self.ref):
                return self.ref
            if self._local is not None:
                return self._local_head()
            return self._remote_head()

    def _local_head(self) -> str:
        assert self._local is not None
        name = self.ref or "HEAD"
        try:
            return self._local.rev_parse(f"{name}^{{commit}}").hexsha
        except (git.BadName, ValueError, git.GitCommandError) as err:
            raise SourceError("GitOperationFailed", f"{self.url}: no branch, tag or commit {name!r} ({err})") from None

    def _remote_head(self) -> str:
        try:
            out = git.cmd.Git().ls_remote(self.url, env=self._env(), kill_after_timeout=GIT_TIMEOUT)
        except git.GitCommandError as err:
            raise SourceError("GitOperationFailed", f"cannot reach {safe_url(self.url)}: {_git_error(err)}") from None
        refs = dict(reversed(line.split("\t", 1)) for line in out.splitlines() if "\t" in line)
        name = self.ref
        candidates = ["HEAD"] if name is None else [
            f"refs/heads/{name}", f"refs/tags/{name}^{{}}", f"refs/tags/{name}", name]
        for candidate in candidates:
            if candidate in refs:
                return refs[candidate]
        raise SourceError("GitOperationFailed", f"{safe_url(self.url)} has no branch or tag {name or 'HEAD'!r}")

    def sync(self) -> str:
        """The commit the ref names now, its objects fetched into the mirror."""
        sha = self.head()
        if sha in self._have:
            self.last_synced = sha
            return sha
        if not self._has_commit(sha):
            self.fetch()
            if not self._has_commit(sha):
                raise SourceError("GitOperationFailed", f"commit {sha[:12]} is not in {safe_url(self.url)} after a fetch")
        self._have.add(sha)
        self.last_synced = sha
        return sha

    def fetch(self) -> None:
        """Mirror every ref of the source, with force: a force push is followed."""
        started = time.monotonic()
        try:
            self.mirror.git.fetch("--prune", "--force", "--quiet", "origin", env=self._env(),
                                  kill_after_timeout=GIT_TIMEOUT)
        except git.GitCommandError as err:
            raise SourceError("GitOperationFailed", f"cannot fetch {safe_url(self.url)}: {_git_error(err)}") from None
        log.debug("fetched %s in %.3fs", safe_url(self.url), time.monotonic() - started)

    def _has_commit(self, sha: str) -> bool:
        try:
            self.mirror.git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    # --- signatures --------------------------------------------------------------------

    def _prepare_keyring(self, keyring: Path) -> Path:
        if keyring.is_dir():
            return keyring
        if not keyring.is_file():
            raise SourceError("VerificationFailed", f"--verify-commits: {keyring} is neither a key file nor a GnuPG home")
        home = self.home / "gnupg"
        shutil.rmtree(home, ignore_errors=True)  # from scratch: a key removed from the file is gone
        home.mkdir(mode=0o700, parents=True)
        # Public keys only: no gpg-agent is needed, and none may be left running.
        (home / "gpg.conf").write_text("no-autostart\n")
        try:
            self.runner.run(["gpg", "--batch", "--quiet", "--no-autostart", "--homedir", str(home),
                             "--import", str(keyring)])
        except CommandError as err:
            raise SourceError("VerificationFailed", f"cannot import the keys in {keyring}: {err}") from None
        return home

    def verify(self, sha: str) -> str:
        """Who signed `sha` (for the status); raises SourceError when it is unsigned, signed
        with a key that is not in the keyring, or the signature is bad, expired or revoked."""
        if self._gnupg_home is None:
            return ""
        env = dict(self._env(), GNUPGHOME=str(self._gnupg_home))
        rc, _, status = self.mirror.git.verify_commit(
            "--raw", sha, env=env, with_extended_output=True, with_exceptions=False, kill_after_timeout=60)
        lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
        words = {parts[0]: parts[1:] for parts in lines if parts}
        short = sha[:12]
        if rc == 0 and ("GOODSIG" in words or "VALIDSIG" in words):
            uid = " ".join(words.get("GOODSIG", ["", ""])[1:])
            fpr = (words.get("VALIDSIG") or ["?"])[0]
            return f"{uid} ({fpr})".strip()
        if not lines:
            raise SourceError("VerificationFailed", f"commit {short} is not signed; refused (--verify-commits)")
        if "NO_PUBKEY" in words or "ERRSIG" in words:
            key = (words.get("NO_PUBKEY") or words.get("ERRSIG") or ["?"])[0]
            raise SourceError("VerificationFailed", f"commit {short} is signed with key {key}, which is not in the "
                              "trusted keyring; refused")
        for word, what in (("BADSIG", "a bad signature"), ("EXPKEYSIG", "an expired key"),
                           ("EXPSIG", "an expired signature"), ("REVKEYSIG", "a revoked key")):
            if word in words:
                raise SourceError("VerificationFailed", f"commit {short} has {what}; refused")
        raise SourceError("VerificationFailed", f"commit {short}: signature not accepted: {status.strip()[-300:]}")

    # --- the manifests of one commit ---------------------------------------------------

    def export(self, sha: str) -> Revision:
        """The manifest folder at exactly `sha`, extracted once into its own folder."""
        target = self.exports / sha
        root = target if self.path == "." else target / self.path
        if target.is_dir():
            return Revision(sha, root)
        buf = BytesIO()
        try:
            self.mirror.archive(buf, sha, format="tar", path=self.path)
        except git.GitCommandError as err:
            message = _git_error(err)
            if "did not match" in message or "not a valid" in message:
                raise SourceError("ArtifactFailed", f"commit {sha[:12]} has no folder {self.path!r} "
                                  "(check --path)") from None
            raise SourceError("GitOperationFailed", f"cannot export commit {sha[:12]}: {message}") from None
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=self.exports))
        try:
            buf.seek(0)
            with tarfile.open(fileobj=buf, mode="r:") as tar:
                members = [m for m in tar.getmembers() if _plain(m)]
                tar.extractall(tmp, members=members, **_TAR_FILTER)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not root.is_dir():
            raise SourceError("ArtifactFailed", f"commit {sha[:12]}: {self.path!r} is not a folder (check --path)")
        return Revision(sha, root)

    def forget(self, keep: set[str]) -> None:
        """Remove exported revisions other than `keep`."""
        for entry in self.exports.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    # --- change notification -------------------------------------------------------------

    def changes(self, stop: threading.Event) -> Iterator[str]:
        """Local repository: yield as soon as a ref or HEAD changes (a commit, a push, a
        reset). Returns when `stop` is set."""
        import watchfiles

        assert self._local is not None
        dirs = {Path(self._local.git_dir).resolve(), Path(self._local.common_dir).resolve()}

        def is_ref(_change: object, path: str) -> bool:
            p = Path(path)
            if p.name.endswith(".lock"):
                return False
            for d in dirs:
                try:
                    rel = p.relative_to(d)
                except ValueError:
                    continue
                return rel.parts[:1] == ("refs",) or str(rel) in ("HEAD", "packed-refs")
            return False

        for changes in watchfiles.watch(*dirs, watch_filter=is_ref, debounce=400, step=20, stop_event=stop,
                                        rust_timeout=1000, raise_interrupt=False):
            yield ", ".join(sorted({str(Path(p).name) for _, p in changes}))

    def poll(self, stop: threading.Event, interval: float) -> Iterator[str]:
        """Remote repository: every `interval` (±20 % jitter, so that nodes do not ask all
        at once) check the ref with ls-remote and yield when it names another commit."""
        told: str | None = None
        wait = random.uniform(0.2, 1.0) * interval  # spread the first poll too
        while not stop.wait(wait):
            wait = interval * random.uniform(0.8, 1.2)
            try:
                sha = self.head()
            except SourceError as err:
                yield f"poll failed: {err}"  # the main loop records it in the status
                continue
            if sha != self.last_synced and sha != told:
                told = sha
                yield f"new commit {sha[:12]}"


_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _plain(member: tarfile.TarInfo) -> bool:
    """Regular files and folders below the export only (no links, devices, absolute or ..)."""
    name = member.name
    if name.startswith("/") or ".." in Path(name).parts:
        return False
    if member.issym() or member.islnk():
        log.warning("ignoring link %s in the repository: manifests must be plain files", name)
        return False
    return member.isfile() or member.isdir()


def _git_error(err: git.GitCommandError) -> str:
    text = (err.stderr or err.stdout or str(err)).strip()
    text = text.removeprefix("stderr:").strip().strip("'").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return safe_url(" | ".join(lines[-3:])) if lines else f"git exited {err.status}"
