from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from chat.consumers import ChatConsumer


class PathRefused(WebsocketDenier):
    """Refuses the handshake, and holds nothing in the channel layer meanwhile: a denier that
    subscribed (Channels' default) kept a receive open on the Redis layer for as long as its
    socket lived, which stalled other receivers of the process (the health check's)."""

    channel_layer_alias = None


# Any id reaches the consumer, which refuses malformed ones at the handshake (close 4400)
# instead of leaving the URL router to raise. Every other path (`/ws`, `/ws/a/b`, `/other`)
# is refused at the handshake (HTTP 403): Channels' router would raise, a 500 with a traceback.
websocket_urlpatterns = [
    re_path(r"^ws/(?P<client_id>[^/]*)$", ChatConsumer.as_asgi()),
    re_path(r"", PathRefused.as_asgi()),
]
