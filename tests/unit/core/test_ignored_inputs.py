"""Editors' scratch files (vim's 4913 probe and swap files, emacs locks, JetBrains' safe-write
copies) are never build inputs: saving through them leaves the digest as it was."""

from __future__ import annotations

from devloop.inputs.digest import ServiceDigest
from tests.unit.core.test_digest import _service


def test_editor_scratch_files_do_not_change_the_digest(tmp_path):
    svc = _service(tmp_path)
    digest = ServiceDigest(svc)
    digest.scan()
    first = digest.digest()
    app = svc.context / "app"
    for name in ("4913", ".main.py.swp", "main.py~", ".#main.py", "main.py___jb_tmp___"):
        (app / name).write_text("scratch")
    digest.scan()
    assert digest.digest() == first
    # positive control: a real file next to them is an input
    (app / "util.py").write_text("x = 1\n")
    digest.scan()
    assert digest.digest() != first
