"""DreamyTin backend project package.

LiteLLM fetches its model price map from the network when it is imported unless this is
set, and the machine this runs on may have no network; set it before anything imports it.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
