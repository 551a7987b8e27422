import gc
import logging

import pytest

from chat.warmup import warmup


def test_warmup_runs_a_turn_then_settles_the_heap(collector_restored: None, caplog: pytest.LogCaptureFixture) -> None:
    gc.unfreeze()
    with caplog.at_level(logging.INFO, logger="chat.warmup"):
        warmup()
    assert any(record.message.startswith("warm-up done") for record in caplog.records)
    assert gc.get_freeze_count() > 0
