import gc
import logging

import pytest

from chat.warmup import warmup


@pytest.fixture
def unfrozen_after() -> object:
    yield
    gc.unfreeze()


def test_warmup_runs_a_turn_and_freezes_the_startup_heap(
    unfrozen_after: object, caplog: pytest.LogCaptureFixture
) -> None:
    gc.unfreeze()
    with caplog.at_level(logging.INFO, logger="chat.warmup"):
        warmup()
    assert any(record.message.startswith("warm-up done") for record in caplog.records)
    frozen = gc.get_freeze_count()
    # What is frozen is out of every collection's walk: nearly the whole heap, here.
    assert frozen > 0.9 * len(gc.get_objects())
