"""DreamyTin backend project package.

Two process-wide settings, made before anything else is imported:
- LiteLLM fetches its model price map from the network when it is imported unless this is
  set, and the machine this runs on may have no network;
- on Python 3.11, `asyncio.wait_for` can lose a cancel (dreamytin/asyncio_backport.py).
"""

import os

from dreamytin.asyncio_backport import wait_for_install

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
wait_for_install()

__version__ = "0.1.0"
