import gc
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from chat.warmup import WarmupState, warmup, warmup_state
from tests.servers import PROJECT


def test_warmup_runs_a_turn_then_settles_the_heap(collector_restored: None, caplog: pytest.LogCaptureFixture) -> None:
    gc.unfreeze()
    with caplog.at_level(logging.INFO, logger="chat.warmup"):
        warmup()
    assert any(record.message.startswith("warm-up done") for record in caplog.records)
    assert gc.get_freeze_count() > 0
    assert warmup_state() is WarmupState.DONE


def fresh_process_prints(code: str, tmp_path: Path, **extra_env: str) -> str:
    """The last line `code` prints in a new Python process (nothing imported yet), on a SQLite
    file of its own and only the environment given."""
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env | extra_env, capture_output=True, text=True, check=True, cwd=PROJECT
    )
    return out.stdout.split("\n")[-2]


def test_importing_the_app_runs_no_turn_and_imports_no_litellm(tmp_path):
    """Import is for the server to load the app: the warm-up starts when the server calls it,
    and LiteLLM (seconds of start-up) waits for a model that needs it."""
    code = (
        "import gc, sys, dreamytin.asgi, chat.warmup; "
        "print(chat.warmup.warmup_state().value, gc.get_freeze_count(), 'litellm' in sys.modules)"
    )
    assert fresh_process_prints(code, tmp_path) == "pending 0 False"


def test_a_warmup_with_only_openai_and_the_local_model_imports_no_litellm(tmp_path):
    """The local model runs through the OpenAI client: a server with no Anthropic or Google key
    (the no-keys quick start among them) never pays LiteLLM's import."""
    code = (
        "import sys, dreamytin.asgi, chat.warmup; from chat.catalog import catalog_get; chat.warmup.warmup(); "
        "usable = sorted({m.provider for m in catalog_get().models.values() if m.usable}); "
        "print(chat.warmup.warmup_state().value, usable, 'litellm' in sys.modules)"
    )
    assert fresh_process_prints(code, tmp_path, OPENAI_API_KEY="sk-warmup-test") == "done ['local', 'openai'] False"
