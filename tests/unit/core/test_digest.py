"""Input digests: content, not timestamps; ignored paths cost nothing; incremental re-reads."""

from __future__ import annotations

import os
from pathlib import Path

from devloop.config.loader import ServiceConfig
from devloop.inputs.digest import DigestCache, ServiceDigest


def _service(root: Path, **kw) -> ServiceConfig:
    ctx = root / "ctx"
    (ctx / "app").mkdir(parents=True, exist_ok=True)
    if not (ctx / "Dockerfile").exists():
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    if not (ctx / "app/main.py").exists():
        (ctx / "app/main.py").write_text("print('hi')\n")
    fields = dict(name="svc", context=ctx, dockerfile=ctx / "Dockerfile", image="img",
                  deployment="svc", container="svc")
    fields.update(kw)
    return ServiceConfig(**fields)


def _digest(svc: ServiceConfig) -> str:
    d = ServiceDigest(svc)
    d.scan()
    return d.digest()


def test_same_content_same_digest_whatever_the_timestamps(tmp_path):
    svc = _service(tmp_path)
    first = _digest(svc)
    main = svc.context / "app/main.py"
    main.write_text(main.read_text())
    os.utime(main, (1, 1))
    assert _digest(svc) == first
    main.write_text("print('changed')\n")
    assert _digest(svc) != first


def test_ignored_paths_do_not_count(tmp_path):
    svc = _service(tmp_path, ignore=("**/*.md",))
    (svc.context / ".dockerignore").write_text("tests\n")
    first = _digest(svc)
    (svc.context / "tests").mkdir()
    (svc.context / "tests/test_x.py").write_text("x")
    (svc.context / "app/NOTES.md").write_text("x")
    (svc.context / "node_modules/p").mkdir(parents=True)
    (svc.context / "node_modules/p/i.js").write_text("x")
    (svc.context / "app/__pycache__").mkdir()
    (svc.context / "app/__pycache__/main.cpython-311.pyc").write_bytes(b"x")
    assert _digest(svc) == first


def test_dockerfile_outside_the_context_args_and_target_are_inputs(tmp_path):
    svc = _service(tmp_path)
    outside = tmp_path / "Dockerfile.dev"
    outside.write_text("FROM scratch\n")
    base = _digest(_service(tmp_path, dockerfile=outside))
    outside.write_text("FROM scratch\nENV A=1\n")
    assert _digest(_service(tmp_path, dockerfile=outside)) != base
    assert _digest(_service(tmp_path, build_args={"A": "1"})) != _digest(svc)
    assert _digest(_service(tmp_path, target="dev")) != _digest(svc)


def test_one_file_change_rereads_only_that_file(tmp_path):
    svc = _service(tmp_path)
    for i in range(500):
        (svc.context / "app" / f"m{i}.py").write_text(f"x = {i}\n")
    d = ServiceDigest(svc)
    d.scan()
    before = d.digest()
    reads = d.reads
    changed = svc.context / "app/m7.py"
    changed.write_text("x = 'seven'\n")
    d.update([changed])
    assert d.reads == reads + 1
    assert d.digest() != before
    # a full scan afterwards re-reads nothing: every stat matches the cache
    reads = d.reads
    d.scan()
    assert d.reads == reads


def test_persisted_cache_spares_rereads_across_runs(tmp_path):
    svc = _service(tmp_path)
    for i in range(50):
        (svc.context / "app" / f"m{i}.py").write_text(f"x = {i}\n")
    d = ServiceDigest(svc)
    d.scan()
    cache = DigestCache(tmp_path / "cache/digests.json")
    cache.save(d.cache_snapshot())
    again = ServiceDigest(svc, cache.load())
    again.scan()
    assert again.reads == 0 and again.digest() == d.digest()


def test_new_directory_and_deleted_directory_update_incrementally(tmp_path):
    svc = _service(tmp_path)
    d = ServiceDigest(svc)
    d.scan()
    empty = d.digest()
    pkg = svc.context / "app/pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub/a.py").write_text("a")
    d.update([pkg])
    assert "app/pkg/sub/a.py" in d.context.files
    (pkg / "sub/a.py").unlink()
    (pkg / "sub").rmdir()
    pkg.rmdir()
    d.update([pkg])
    assert d.digest() == empty


def test_a_batch_of_deletes_and_adds_leaves_the_index_a_fresh_scan_would_build(tmp_path):
    """A deleted folder arrives as one event per file and one per folder, mixed with adds
    (git checkout, a rename): each form of the batch must leave exactly what a scan finds."""
    svc = _service(tmp_path)
    app = svc.context / "app"
    index = ServiceDigest(svc).context
    for i in range(30):
        (app / f"old/sub{i % 3}").mkdir(parents=True, exist_ok=True)
        (app / f"old/sub{i % 3}/m{i}.py").write_text(str(i))
    index.scan()
    assert len([k for k in index.files if k.startswith("app/old/")]) == 30  # control
    gone = sorted(app.glob("old/**/*.py"))
    (app / "old").rename(app / "moved")
    (app / "new/deep").mkdir(parents=True)
    (app / "new/deep/n.py").write_text("n")

    def batch():  # the disk changes while the batch is applied, as it does under a watcher
        yield from gone[:5]  # deleted files: the first one that is unknown builds the folders
        yield app / "old/sub1"
        yield app / "new/deep/n.py"  # a file in a folder the index did not hold
        (app / "new/deep/n.py").unlink()
        (app / "new/deep").rmdir()
        yield app / "new/deep"  # ... deleted before the batch ends
        (app / "made/x").mkdir(parents=True)
        (app / "made/x/y.py").write_text("y")
        yield app / "made"  # a new folder, walked
        (app / "made/x/y.py").unlink()
        (app / "made/x").rmdir()
        yield app / "made/x"  # ... and its subfolder deleted
        yield from [*gone[5:], app / "old", app / "moved"]

    assert index.update(batch())
    fresh = ServiceDigest(svc).context
    fresh.scan()
    assert index.files == fresh.files
    assert not any(k.startswith(("app/old/", "app/new/", "app/made/")) for k in index.files)
    assert len([k for k in index.files if k.startswith("app/moved/")]) == 30


def test_a_name_that_is_not_utf8_is_hashed_and_changes_the_digest(tmp_path):
    svc = _service(tmp_path)
    base = _digest(svc)
    name = os.path.join(os.fsencode(svc.context / "app"), b"caf\xe9.py")
    with open(name, "wb") as f:
        f.write(b"x = 1\n")
    with_it = _digest(svc)  # no UnicodeEncodeError ("internal error" on every reload before)
    assert with_it != base
    with open(name, "wb") as f:
        f.write(b"x = 2\n")
    assert _digest(svc) not in (base, with_it)


def test_fifos_and_sockets_are_skipped_and_a_file_replaced_by_a_fifo_never_hangs(tmp_path):
    svc = _service(tmp_path)
    base = _digest(svc)
    os.mkfifo(svc.context / "app/pipe")
    assert _digest(svc) == base
    d = ServiceDigest(svc)
    d.scan()
    target = svc.context / "app/main.py"
    os.unlink(target)
    os.mkfifo(target)  # listed as a file, a FIFO when read: open() would block for ever
    d.update([target])
    assert "app/main.py" not in d.context.files


def test_a_case_only_rename_on_a_case_insensitive_file_system_keeps_one_entry(
        tmp_path, monkeypatch):
    # Linux file systems here are case-sensitive; macOS's and Windows' fold case, so the old
    # name still answers to lstat after `mv App.py app.py`. That folding is simulated.
    import devloop.inputs.digest as digest_mod

    real_lstat = os.lstat

    def folding_lstat(path, *args, **kwargs):
        try:
            return real_lstat(path, *args, **kwargs)
        except FileNotFoundError:
            parent, name = os.path.split(os.fspath(path))
            for other in os.listdir(parent):
                if other.lower() == name.lower():
                    return real_lstat(os.path.join(parent, other), *args, **kwargs)
            raise

    monkeypatch.setattr(digest_mod, "case_insensitive", lambda root: True)
    monkeypatch.setattr(digest_mod.os, "lstat", folding_lstat)
    svc = _service(tmp_path)
    (svc.context / "app/Util.py").write_text("u = 1\n")
    d = ServiceDigest(svc)
    d.scan()
    os.rename(svc.context / "app/Util.py", svc.context / "app/util.py")
    d.update([svc.context / "app/Util.py", svc.context / "app/util.py"])
    assert sorted(d.context.files) == ["Dockerfile", "app/main.py", "app/util.py"]


def test_windows_separators_in_ignore_patterns_mean_slashes(tmp_path):
    svc = _service(tmp_path, ignore=("app\\generated",))
    (svc.context / ".dockerignore").write_text("app\\*.log\n")
    base = _digest(svc)
    (svc.context / "app/generated").mkdir()
    (svc.context / "app/generated/x.py").write_text("x")
    (svc.context / "app/debug.log").write_text("x")
    assert _digest(svc) == base


def test_a_file_that_vanishes_or_is_replaced_while_hashed_is_dropped_not_an_error(
        tmp_path, monkeypatch):
    import devloop.inputs.digest as digest_mod

    svc = _service(tmp_path)
    for name in ("gone.py", "now_a_dir.py"):
        (svc.context / "app" / name).write_text("x\n")
    real_hash = digest_mod.hash_file

    def racing(path, st):
        # another process deletes or replaces the file between listing and reading
        if path.name == "gone.py":
            path.unlink()
        elif path.name == "now_a_dir.py":
            path.unlink()
            path.mkdir()
        return real_hash(path, st)

    monkeypatch.setattr(digest_mod, "hash_file", racing)
    d = ServiceDigest(svc)
    d.scan()
    d.digest()
    assert sorted(d.context.files) == ["Dockerfile", "app/main.py"]
