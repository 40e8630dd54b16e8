"""What every route shares: errors answered as JSON with their stable code, requests counted by
route, status and key id, the header cap, and Starlette's own 404 and 405 in the same shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from ..errors import HeadersTooLarge, MethodNotAllowed, NotFound, ServiceError
from ..metrics import Metrics
from .formats import Rendered

logger = logging.getLogger("ray.serve")

Handler = Callable[[Request], Awaitable[Response]]
MAX_HEADER_BYTES = 16 * 1024  # a key and a few headers need under 2 KiB


def route(name: str, handler: Handler, metrics: Metrics) -> Handler:
    """`handler` answering errors as JSON, counted under route `name`."""

    async def wrapped(request: Request) -> Response:
        try:
            check_headers(request)
            response = await handler(request)
        except ServiceError as exc:
            response = exc.response()
        except Exception:
            # Log the details, answer without internals.
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            response = ServiceError().response()
        metrics.request(name, response.status_code, getattr(request.state, "key_id", "none"))
        return response

    return wrapped


def check_headers(connection: HTTPConnection) -> None:
    """Headers past MAX_HEADER_BYTES are refused. Serve's proxy (uvicorn with h11, see setup.sh) drops
    a connection whose headers are still incomplete past 16 KiB; what it passes on is checked here."""
    if sum(len(name) + len(value) for name, value in connection.scope["headers"]) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"Request headers larger than {MAX_HEADER_BYTES:,} bytes")


def respond(rendered: Rendered) -> Response:
    return Response(rendered.body, headers={"content-type": rendered.content_type})


async def http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    error = {404: NotFound, 405: MethodNotAllowed}.get(status, ServiceError)
    return error().response()


class StreamRoute(WebSocketRoute):
    """A WebSocket route whose handshake method Ray Serve can read. Without `methods`, Serve's route
    extraction marks the whole path "any method" and then matches it as GET only, so the POSTs
    sharing `/v1/listen` would be logged and counted under route "/"."""

    methods = {"GET"}
