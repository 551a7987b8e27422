from django.urls import re_path

from chat.consumers import ChatConsumer

# Any id reaches the consumer, which refuses malformed ones at the handshake (close 4400)
# instead of leaving the URL router to raise.
websocket_urlpatterns = [
    re_path(r"^ws/(?P<client_id>[^/]*)$", ChatConsumer.as_asgi()),
]
