"""`manage.py runserver` is Daphne's: the dev server speaks HTTP and WebSocket.

The command comes from here, not from Daphne's app: that app imports Daphne's server and Twisted
when Django starts, in every process, uvicorn's workers included (0.19 s of start-up), only to
provide this command.
"""

from daphne.management.commands.runserver import Command

__all__ = ["Command"]
