"""The agent's git source on real repositories: refs, exports at one commit, the cheap
check, the local watch, and signature verification with GnuPG keys made here."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from controller.source import GitSource, SourceError, is_remote, safe_url
from tests.unit.test_agent import GIT_ENV, Repo, git


@pytest.fixture
def repo(tmp_path) -> Repo:
    r = Repo(tmp_path / "work")
    r.commit({"desired-state/a.yaml": "a: 1\n", "README": "x\n"}, "first")
    return r


def source(tmp_path: Path, url: str, **kw) -> GitSource:
    s = GitSource(url, tmp_path / "state", **kw)
    s.open()
    return s


def test_branch_tag_and_commit_refs_resolve_locally_and_remotely(repo, tmp_path):
    first = git(repo.path, "rev-parse", "HEAD")
    git(repo.path, "tag", "-a", "-m", "release", "v1")
    second = repo.commit({"desired-state/a.yaml": "a: 2\n"})
    for url in (str(repo.path), f"file://{repo.path}"):
        assert source(tmp_path / url[:4], url).head() == second
        assert source(tmp_path / url[:4], url, ref="main").head() == second
        assert source(tmp_path / url[:4], url, ref="v1").head() == first  # an annotated tag, peeled
        assert source(tmp_path / url[:4], url, ref=first).head() == first
        with pytest.raises(SourceError, match="no branch"):
            source(tmp_path / url[:4], url, ref="nope").head()


def test_an_export_holds_exactly_one_commit_and_only_the_manifest_folder(repo, tmp_path):
    first = git(repo.path, "rev-parse", "HEAD")
    repo.commit({"desired-state/a.yaml": "a: 2\n", "desired-state/sub/b.yaml": "b: 1\n"})
    os.symlink("/etc/shadow", repo.path / "desired-state" / "link.yaml")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "a link")
    s = source(tmp_path, str(repo.path), path="desired-state")
    old = s.export(first)
    new = s.export(s.sync())
    assert (old.root / "a.yaml").read_text() == "a: 1\n"
    assert (new.root / "a.yaml").read_text() == "a: 2\n" and (new.root / "sub" / "b.yaml").exists()
    assert not (new.root / "link.yaml").exists()  # links are not followed out of the repository
    assert not (new.root.parent / "README").exists()
    s.forget({new.sha})
    assert [p.name for p in s.exports.iterdir()] == [new.sha]


def test_a_missing_manifest_folder_is_an_artifact_error(repo, tmp_path):
    s = source(tmp_path, str(repo.path), path="manifests")
    with pytest.raises(SourceError, match="has no folder 'manifests'") as err:
        s.export(s.sync())
    assert err.value.reason == "ArtifactFailed"


def test_the_cheap_check_fetches_only_when_the_ref_moved(repo, tmp_path):
    s = source(tmp_path, f"file://{repo.path}", ref="main")
    sha = s.sync()
    fetches = []
    original = s.fetch
    s.fetch = lambda: (fetches.append(1), original())[1]  # type: ignore[method-assign]
    assert s.sync() == sha and fetches == []
    new = repo.commit({"desired-state/a.yaml": "a: 3\n"})
    assert s.sync() == new and fetches == [1]


def test_a_local_repository_is_watched_and_a_commit_seen_at_once(repo, tmp_path):
    s = source(tmp_path, str(repo.path))
    stop = threading.Event()
    seen: list[tuple[float, str]] = []

    def watch() -> None:
        for what in s.changes(stop):
            seen.append((time.monotonic(), what))

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(0.2)
    committed = time.monotonic()
    repo.commit({"desired-state/a.yaml": "a: 4\n"})
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(3)
    assert seen, "no change seen"
    assert seen[0][1] == "main" and seen[0][0] - committed < 2.0


def test_urls_are_told_apart_and_passwords_never_shown():
    assert is_remote("https://git.example.test/ops.git") and is_remote("git@git.example.test:ops.git")
    assert is_remote("file:///srv/ops.git") and not is_remote("/srv/ops.git")
    assert safe_url("https://bot:s3cret@git.example.test/ops.git") == "https://bot:***@git.example.test/ops.git"


def test_an_unreachable_remote_is_a_source_error_not_a_crash(tmp_path):
    with pytest.raises(SourceError) as err:
        source(tmp_path, f"file://{tmp_path}/absent.git")
    assert err.value.reason == "GitOperationFailed" and "cannot clone" in str(err.value)


# --- signatures --------------------------------------------------------------------------------


def _gpg(home: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), *args], check=True, capture_output=True,
                          text=True, input=input).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two signing keys made here without a passphrase: the operator's and a stranger's."""
    made = {}
    for who in ("operator", "stranger"):
        home = tmp_path_factory.mktemp(f"gnupg-{who}")
        home.chmod(0o700)
        _gpg(home, "--passphrase", "", "--quick-gen-key", f"{who} <{who}@example.test>", "ed25519", "sign", "never")
        fpr = next(line.split(":")[9] for line in _gpg(home, "--with-colons", "--list-keys").splitlines()
                   if line.startswith("fpr:"))
        made[who] = (home, fpr)
    public = tmp_path_factory.mktemp("keyring") / "trusted.asc"
    public.write_text(_gpg(made["operator"][0], "--armor", "--export", made["operator"][1]))
    yield made, public
    for home, _ in made.values():
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def signed_commit(repo: Repo, home: Path, fpr: str, text: str) -> str:
    (repo.path / "desired-state" / "a.yaml").write_text(text)
    git(repo.path, "add", "-A")
    subprocess.run(["git", "-c", f"user.signingkey={fpr}", "commit", "-q", "-S", "-m", "signed"], cwd=repo.path,
                   check=True, capture_output=True, env={**os.environ, **GIT_ENV, "GNUPGHOME": str(home)})
    return git(repo.path, "rev-parse", "HEAD")


def test_only_commits_signed_by_the_keyring_are_accepted(repo, tmp_path, keys):
    (made, public) = keys
    s = source(tmp_path, str(repo.path), keyring=public)
    with pytest.raises(SourceError, match="is not signed; refused") as err:
        s.verify(s.sync())
    assert err.value.reason == "VerificationFailed"
    good = signed_commit(repo, *made["operator"], "a: signed\n")
    assert s.verify(s.sync()) == f"operator <operator@example.test> ({made['operator'][1]})"
    strange = signed_commit(repo, *made["stranger"], "a: strange\n")
    assert s.sync() == strange
    with pytest.raises(SourceError, match="not in the trusted keyring"):
        s.verify(strange)
    assert good != strange


def test_a_gnupg_home_folder_is_a_keyring_too(repo, tmp_path, keys):
    (made, _public) = keys
    home, fpr = made["operator"]
    sha = signed_commit(repo, home, fpr, "a: home\n")
    s = source(tmp_path, str(repo.path), keyring=home)
    assert s.verify(sha).startswith("operator")


def test_a_folder_inside_a_work_tree_means_that_folder_of_its_repository(repo, tmp_path):
    s = source(tmp_path, str(repo.path / "desired-state"))
    assert (s.url, s.path) == (str(repo.path.resolve()), "desired-state")
    assert (s.export(s.sync()).root / "a.yaml").read_text() == "a: 1\n"
    with pytest.raises(SourceError, match="is not in a git repository"):
        source(tmp_path / "x", str(tmp_path))
