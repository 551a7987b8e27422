"""The ASGI application: HTTP to Django, WebSocket through the origin check to `chat`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dreamytin.settings")

from django.core.asgi import get_asgi_application

# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.websocket import AccessGuard  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from dreamytin.startup import LifespanApp, twisted_hooks_install  # noqa: E402
from dreamytin.websocket_origin import OriginCheckMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The origin check first (a cross-site page never gets to use a session cookie), then
        # who may connect and how many sockets (accounts.websocket), once at the handshake.
        "websocket": OriginCheckMiddleware(AccessGuard(URLRouter(websocket_urlpatterns))),
        # uvicorn sends lifespan events; Daphne does not: there the reactor starts and stops them.
        "lifespan": LifespanApp(),
    }
)
twisted_hooks_install()
