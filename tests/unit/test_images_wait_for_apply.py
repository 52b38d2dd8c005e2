"""When a built image waits for the manifest apply instead of being patched (one rollout for a
manifest edit and a source edit saved together): a plain function of the manifests' state."""

from __future__ import annotations

from devloop.loop import rules as decide
from devloop.loop.rules import ManifestState, Timing

T = Timing(quiet_s=0.1, cap_s=2.0)


def test_images_wait_only_while_a_manifest_edit_waits_to_be_applied():
    m = ManifestState()
    assert not decide.images_wait_for_apply(m)
    decide.note_manifest_change(m, at=0.0, edited=False)  # the first apply at start
    assert not decide.images_wait_for_apply(m)
    assert decide.start_manifests(m, {}, 1.0, T)
    decide.manifests_done(m, retry=False, now=1.0, timing=T)

    decide.note_manifest_change(m, at=2.0)  # a save to a values file
    assert decide.images_wait_for_apply(m)
    assert decide.start_manifests(m, {}, 2.2, T)  # the apply takes the images with it
    assert not decide.images_wait_for_apply(m)
    decide.note_manifest_change(m, at=2.3)  # saved during the apply: the next one carries it
    assert decide.images_wait_for_apply(m)
    decide.manifests_done(m, retry=False, now=2.5, timing=T)
    assert decide.start_manifests(m, {}, 2.5, T)
    decide.manifests_done(m, retry=True, now=2.6, timing=T)  # a retry is no edit
    assert not decide.images_wait_for_apply(m)
