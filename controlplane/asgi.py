"""ASGI entry point: HTTP through Django, WebSockets through Channels (session auth, Origin
checked against ALLOWED_HOSTS)."""

import gc
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
# Each HTTP request runs its sync code in a new thread here, so only a pool reuses database
# connections across requests (DATABASE_POOL in settings; ignored on SQLite). The default is
# for this process only: not left in the environment for processes it may start.
_pool_default = "DATABASE_POOL" not in os.environ
if _pool_default:
    os.environ["DATABASE_POOL"] = "10"


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain and the (sync) views run as one sync
    call in the request's thread.

    Django's own async chain runs every ``process_request`` / ``process_response`` of its
    middleware in a thread of its own and comes back to the event loop in between: about a
    dozen hops between the loop and a thread per request with our middleware, a third of the
    CPU of a short API request. Our views are all sync, so one hop does. Streaming responses
    (the what-if preview's async generator) are still sent from the event loop.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain: Any = vars(self)["_middleware_chain"]
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)


# Django must be set up before anything imports models (the consumers do).
django.setup(set_prefix=False)
django_asgi_app = SyncChainASGIHandler()
if _pool_default:
    del os.environ["DATABASE_POOL"]

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full collections, which otherwise walk ~150,000 objects (a 110 ms pause, once
# every few hundred API requests, which is the p99). The URLconf (every view and serializer)
# is imported first so it is frozen too.
get_resolver().url_patterns  # noqa: B018 - imports the URLconf
gc.collect()
gc.freeze()
