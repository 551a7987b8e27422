from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from chat.consumers import ChatConsumer

# Any id reaches the consumer, which refuses malformed ones at the handshake (close 4400)
# instead of leaving the URL router to raise. Every other path (`/ws`, `/ws/a/b`, `/other`)
# is refused at the handshake (HTTP 403): Channels' router would raise, a 500 with a traceback.
websocket_urlpatterns = [
    re_path(r"^ws/(?P<client_id>[^/]*)$", ChatConsumer.as_asgi()),
    re_path(r"", WebsocketDenier.as_asgi()),
]
