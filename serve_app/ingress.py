"""The ingress deployment: it builds the parts once per replica and maps each API's routes onto
them. What a request goes through is in the file list:

- `api/`: one module per API the service speaks (its option names and answer shapes), plus the
  file and live routes they share (`files.py`, `streaming.py`), `access.py` (keys), `health.py`,
  `usage.py`;
- `pipeline/`: the dialect-free stages in request order (source, fetch, decode, chunk, engine
  client, stitch, transforms, meter), run for a file by `pipeline/files.py`;
- `stream/`: the same for a live stream; `licensing/`: keys, limits and usage.

Errors of every stage are `ServiceError`s, answered as JSON in one place (`api/http.py`)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from .api import listen, openai, pulse
from .api.access import Access
from .api.demo import FILES as DEMO_FILES
from .api.demo import DemoPage
from .api.files import FileRoutes
from .api.health import Health
from .api.http import StreamRoute, http_exception, route
from .api.live import Deepgram
from .api.pulse_live import Smallest
from .api.realtime import Realtime
from .api.streaming import StreamRoutes
from .api.twilio import Twilio
from .api.usage import UsageRoute
from .callback import Callbacks
from .licensing.auth import Authenticator, FailureThrottle
from .licensing.limits import Limiter
from .metrics import Metrics, RayMetrics
from .outbox import OutboxStore
from .outbox import beside as outbox_beside
from .pipeline.engine_client import EngineClient
from .pipeline.fetch import Fetcher, FetchLimits, UrlPolicy
from .pipeline.files import FilePipeline
from .pipeline.meter import Meter
from .pipeline.source import BodyLimits
from .settings import IngressArgs
from .stream.drain import Drain
from .watch import replica_stopping


class Ingress:
    def __init__(
        self,
        engine: Any,
        args: IngressArgs | dict,
        auth: Authenticator,
        limiter: Limiter,
        url_policy: UrlPolicy,
        metrics: Metrics | None = None,
        outbox: OutboxStore | None = None,
    ) -> None:
        self.args = args = IngressArgs.model_validate(args)
        self.engine = EngineClient(engine, args.engine_timeout_s)  # engine: a DeploymentHandle (a fake in tests)
        self.auth, self.limiter, self.url_policy = auth, limiter, url_policy
        self.metrics = metrics if metrics is not None else RayMetrics()
        self.auth_throttle = FailureThrottle(args.auth_failures_per_minute)
        self.max_bytes = int(args.max_body_mb * 1_000_000)
        limits = FetchLimits(self.max_bytes, args.url_timeout_s, args.url_max_redirects)
        self.fetcher = Fetcher(url_policy, limits, args.url_fetch_workers)  # its own threads: slow URLs wait there
        # Pending callbacks live in the usage store's backend unless told otherwise (outbox.py).
        self.callbacks = Callbacks(outbox if outbox is not None else outbox_beside(limiter.store), url_policy, args.callbacks)
        self.callbacks.start()  # under Serve, on the replica's event loop; in tests, at the first callback request
        self.drain = Drain(replica_stopping)  # live streams end with their finals when Serve stops this replica

    def __serve_build_asgi_app__(self) -> Starlette:
        """The routes, wired to the parts as they are now (tests swap a part before building)."""
        args, engine, limiter = self.args, self.engine, self.limiter
        access = Access(self.auth, self.auth_throttle, limiter, self.metrics)
        meter = Meter(self.metrics, limiter)
        body_limits = BodyLimits(self.max_bytes, args.body_idle_s, args.body_min_bytes_per_s)
        files = FileRoutes(
            access,
            limiter,
            engine,
            FilePipeline(engine, self.fetcher, meter, args),
            meter,
            self.callbacks,
            self.url_policy,
            body_limits,
        )
        streams = StreamRoutes(
            access,
            limiter,
            engine,
            meter,
            self.metrics,
            args.stream,
            args.condition_on_previous_text,
            callbacks=self.callbacks,
            url_policy=self.url_policy,
            drain=self.drain,
        )
        return self._routes(files, streams, Health(engine, limiter, self.auth), UsageRoute(access, limiter))

    def _routes(self, files: FileRoutes, streams: StreamRoutes, health: Health, usage: UsageRoute) -> Starlette:
        http = lambda name, handler: route(name, handler, self.metrics)  # noqa: E731  # counted under `name`
        return Starlette(
            routes=[
                Route("/health", http("health", health.health), methods=["GET"]),
                Route("/v1/listen", http("listen", files.handler(listen.OPTIONS, listen.DEFAULT_FORMAT)), methods=["POST"]),
                Route(
                    "/v1/audio/transcriptions",
                    http("openai_transcriptions", files.handler(openai.OPTIONS, openai.DEFAULT_FORMAT)),
                    methods=["POST"],
                ),
                Route(
                    "/v1/audio/translations",
                    http("openai_translations", files.handler(openai.TRANSLATION_OPTIONS, openai.DEFAULT_FORMAT)),
                    methods=["POST"],
                ),
                # Smallest's cloud path, which its `smallestai` SDK posts to (with a trailing slash)
                Route("/waves/v1/stt", http("waves", files.handler(pulse.OPTIONS, pulse.DEFAULT_FORMAT)), methods=["POST"]),
                Route("/waves/v1/stt/", http("waves", files.handler(pulse.OPTIONS, pulse.DEFAULT_FORMAT)), methods=["POST"]),
                Route("/v1/usage", http("usage", usage.usage), methods=["GET"]),
                # Live transcription: Deepgram's paths, Smallest's, Twilio Media Streams', OpenAI's realtime
                # transcription sessions (a dialect object per stream)
                StreamRoute("/v1/listen", streams.handler(Deepgram)),
                StreamRoute("/v1/listen/stream", streams.handler(Deepgram)),
                StreamRoute("/waves/v1/stt/live", streams.handler(Smallest)),
                StreamRoute("/v1/twilio", streams.handler(Twilio)),
                StreamRoute("/v1/realtime", streams.handler(Realtime)),
                *self._demo(),
            ],
            exception_handlers={HTTPException: http_exception},
        )

    def _demo(self) -> list[Route]:
        """The browser demo's page, script and style (api/demo.py), when the config turns it on."""
        if not self.args.demo_page:
            return []
        page = DemoPage()
        return [Route(path, route("demo", page.serve, self.metrics), methods=["GET"]) for path in DEMO_FILES]
