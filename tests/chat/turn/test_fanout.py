"""A conversation's log of its latest turn, which every socket of it is sent from: what it takes
and what it refuses, whoever appends (a turn of this process, or the relay reading Redis)."""

from __future__ import annotations

from chat.turn.fanout import Feeds


def test_a_finished_turn_read_back_late_does_not_replace_the_running_one():
    # With REDIS_URL, the relay may read back what a turn of this process wrote after the next
    # turn has begun here (its place in the stream moves only while a turn runs here).
    feed = Feeds().get("conv")
    old = ["old 1", "old 2", "old end"]
    for seq, frame in enumerate(old, 1):
        assert feed.append("old", seq, frame, end=seq == len(old))
    assert feed.append("new", 1, "new 1")

    read_back = [feed.append("old", seq, frame, end=seq == len(old)) for seq, frame in enumerate(old, 1)]

    assert read_back == [False, False, False]
    assert feed.append("new", 2, "new 2")
    assert feed.log is not None and (feed.log.turn_id, feed.log.frames) == ("new", ["new 1", "new 2"])
    assert feed.live()  # the sockets still wait for the new turn's end, not the old one's


def test_a_turn_begun_elsewhere_replaces_the_last_one():
    feed = Feeds().get("conv")
    assert feed.append("first", 1, "first end", end=True)
    assert feed.append("second", 1, "second 1")
    assert not feed.append("third", 2, "third 2")  # the middle of a turn never seen begin
    assert feed.log is not None and feed.log.turn_id == "second"
