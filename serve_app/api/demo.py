"""`GET /demo`: a browser page that streams the microphone to `WS /v1/listen` and shows the transcript
as it comes (serve_app/static/demo.*: plain HTML, JavaScript and CSS, no build step, nothing from
another origin). Served when `ingress.demo_page` is on (configs/cpu.yaml; off by default, so off in
production). The page needs no key to load: it asks for one and sends it as the WebSocket subprotocol,
never in a URL. Its Content-Security-Policy allows this origin's script and style and a WebSocket to
this host, nothing else (no inline script, no frames, no form posts)."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

STATIC = Path(__file__).resolve().parent.parent / "static"
# Path -> (file in STATIC, content type); nothing else is served from there.
FILES = {
    "/demo": ("demo.html", "text/html; charset=utf-8"),
    "/demo/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo/demo.css": ("demo.css", "text/css; charset=utf-8"),
}
# A host as browsers send it (name or address, optional port): anything else is left out of the policy.
HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def policy(host: str | None) -> str:
    """CSP 3 lets 'self' match ws:/wss: to the page's own host; older browsers need the host named."""
    sockets = f" ws://{host} wss://{host}" if host and HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class DemoPage:
    def __init__(self) -> None:
        self.files = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in FILES.items()}  # read once

    async def serve(self, request: Request) -> Response:
        body, kind = self.files[request.url.path]
        headers = {
            "content-type": kind,
            "content-security-policy": policy(request.headers.get("host")),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "permissions-policy": "microphone=(self)",
            "cache-control": "no-cache",
        }
        return Response(body, headers=headers)
