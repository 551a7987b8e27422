"""`manage.py runserver` is Daphne's, while the ASGI app that uvicorn loads leaves Twisted out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daphne.management.commands.runserver import Command as DaphneRunserver
from django.core.management import get_commands, load_command_class

PROJECT = Path(__file__).resolve().parents[2]


def test_runserver_is_daphnes():
    assert isinstance(load_command_class(get_commands()["runserver"], "runserver"), DaphneRunserver)


def test_the_asgi_app_loads_without_daphnes_server(tmp_path):
    # uvicorn imports only the app; Daphne's server and Twisted would add ~0.2 s to its start.
    code = "import sys, dreamytin.asgi; print(sorted({'daphne.server', 'twisted'} & set(sys.modules)))"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=PROJECT)
    assert out.stdout.split("\n")[-2] == "[]"
