"""The conversation id format the contract fixes."""

import re

CONVERSATION_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_ID = re.compile(rf"^{CONVERSATION_ID_PATTERN}$")


def conversation_id_valid(value: str) -> bool:
    return bool(_ID.fullmatch(value))
