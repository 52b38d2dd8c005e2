"""The feed open pages read (devloop/ui/dashboard/feed.py): its bounds, what a reader that fell
behind is told it missed, and which Last-Event-IDs resume. Plain state, no server, no waiting
(reads with timeout 0)."""

from __future__ import annotations

from devloop.ui.dashboard.feed import Feed


def _seqs(feed: Feed, after: int) -> tuple[list[int], int]:
    messages, missed = feed.read(after, 0)
    return [m.seq for m in messages], missed


def test_bounded_by_count_and_by_bytes_and_a_laggard_is_told_what_it_missed():
    feed = Feed(max_messages=3, max_bytes=1000, run="r")
    feed.open()
    for _ in range(5):
        feed.append("event", b"x")
    assert feed.kept()[0] == 3
    assert _seqs(feed, 0) == ([3, 4, 5], 2)  # 1 and 2 are gone
    assert _seqs(feed, 3) == ([4, 5], 0)
    assert _seqs(feed, 5) == ([], 0)
    feed.append("event", b"y" * 600)
    feed.append("event", b"z" * 600)  # over 1000 bytes: only the newest stays
    assert _seqs(feed, 5) == ([7], 1)
    assert feed.kept()[1] <= 1000


def test_nothing_is_kept_without_a_reader_and_a_card_frame_names_its_kind():
    feed = Feed(run="r")
    feed.append("event", b"{}")
    assert feed.kept() == (0, 0) and feed.seq == 1
    feed.open()
    feed.append("card", b'{"a":1}')
    [message], missed = feed.read(1, 0)
    assert missed == 0
    assert message.frame == b'id: r-2\nevent: card\ndata: {"a":1}\n\n'
    feed.close()
    assert feed.kept() == (0, 0)  # the last reader gone: the ring is emptied


def test_only_an_id_of_this_run_within_reach_resumes():
    feed = Feed(run="abc")
    feed.open()
    for _ in range(3):
        feed.append("event", b"{}")
    assert feed.position("abc-2") == 2
    assert feed.position(" abc-3 ") == 3
    for other in ("xyz-2", "abc-4", "abc-", "abc-\u00b2", "abc--1", "2", "", "abc-" + "9" * 40):
        assert feed.position(other) is None, other
