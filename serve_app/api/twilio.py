"""Twilio Media Streams, `WS /v1/twilio`: what Twilio's `<Connect><Stream>` or `<Start><Stream>`
sends (JSON text messages: `connected`, `start`, `media` with base64 mu-law at 8 kHz, `dtmf`,
`mark`, `stop`) and the `transcript` events this server answers with.

Twilio cannot set headers and its `<Stream url>` takes no query string, so the key and the options
come in `start.customParameters` (TwiML `<Parameter>`): `key` is the license key (read only when
the handshake carried none, never logged nor echoed), the others are the live options of
`WS /v1/listen` (language, endpointing, interim_results, smart_format, redact, keyterm, ...) and
`track` (`inbound`, the caller, by default; or `outbound`). The audio format is `start.mediaFormat`'s.

Answers (one JSON text message each, `streamSid` and `callSid` in every one):
`{"event": "transcript", "is_final", "speech_final", "is_last", "text", "start", "duration",
"confidence", "words": [...]}`, `speech_started` (`vad_events=true`), `utterance_end`
(`utterance_end_ms`), `error` (`code`, `error`, `parameter`), and `metadata` (`request_id`,
`duration`) once `stop` has been answered. Nothing is sent in Twilio's own vocabulary: no `media`,
`mark` or `clear`.

Twilio itself reads none of those messages, so the transcript can also go where the call's owner
reads it: a `callback` custom parameter (a URL under the file callbacks' rules) gets the whole
call's transcript POSTed once the stream ends (`{"event": "call_transcript", ...}`, `report`), through
the callback outbox, retried as file callbacks are. For it the stream keeps each final's text and
times (no words): a few MB at most over the 3 h a stream may last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import InvalidRequest, ServiceError
from ..stream.protocol import CLOSE, Context, Incoming, Opening, Result, StreamOptions, base64_audio, json_message
from .listen import word_dict
from .live import Deepgram
from .live_params import MAX_CHANNELS, SAMPLE_RATES

KEY = "key"  # the customParameters entry that carries the license key
CALLBACK = "callback"  # the customParameters entry with the URL the call's transcript is POSTed to
TRACKS = ("inbound", "outbound")
MULAW = "audio/x-mulaw"  # the only encoding Twilio streams
# The options of /v1/listen a Twilio stream does not take, and why
NOT_HERE = {
    **dict.fromkeys(("encoding", "sample_rate", "channels"), "it is set by start.mediaFormat"),
    **dict.fromkeys(("search", "extra"), "transcript events have no place for it"),  # Deepgram's answer fields
    **dict.fromkeys(("multichannel", "diarize"), "a track is one channel, transcribed without speakers"),
}


class Twilio:
    """`WS /v1/twilio` as Twilio's Media Streams speak it; one per stream (it keeps the stream's ids)."""

    name = "twilio"
    key_in_opening = True

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.track = "inbound"
        self._query: dict[str, Any] = {}
        self._default_endpoint_s = 0.3
        self.callback: str | None = None
        self._finals: list[dict[str, Any]] = []  # for the callback's report, kept only when there is one

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        """The handshake's query (Twilio sends none; other clients may): checked now, used with `start`."""
        self._query, self._default_endpoint_s = dict(params), default_endpoint_s
        return self._options(self._query, 8000, 1)

    def greeting(self, ctx: Context, headers: Mapping[str, str], subprotocols: Sequence[str]) -> dict[str, Any] | None:
        return None  # Twilio speaks first

    def opening(self, text: str, ctx: Context) -> Opening:
        message, event = json_message(text, "event")
        if event == "start":
            try:
                return self._start(message)
            except InvalidRequest as exc:  # Twilio sends `start` once: the stream cannot begin
                return Opening(error=exc)
        if event in ("connected", "mark", "dtmf"):
            return Opening()
        if event in ("media", "stop"):
            raise InvalidRequest(f"{event} before start: a stream begins with Twilio's start message", parameter="event")
        raise InvalidRequest("Unknown event: expected connected, start, media, mark, dtmf or stop", parameter="event")

    def _start(self, message: dict[str, Any]) -> Opening:
        start = message.get("start")
        if not isinstance(start, dict):
            raise InvalidRequest("start must be an object", parameter="start")
        sid = start.get("streamSid", message.get("streamSid"))
        if not isinstance(sid, str) or not sid:
            raise InvalidRequest("start.streamSid must be a string", parameter="start.streamSid")
        call = start.get("callSid")
        media = start.get("mediaFormat")
        if not isinstance(media, dict) or media.get("encoding") != MULAW:
            raise InvalidRequest(f"start.mediaFormat.encoding must be {MULAW}", parameter="start.mediaFormat")
        rate, channels = media.get("sampleRate", 8000), media.get("channels", 1)
        if type(rate) is not int or not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
            raise InvalidRequest("start.mediaFormat.sampleRate must be a whole number of Hz", parameter="start.mediaFormat")
        if type(channels) is not int or not 1 <= channels <= MAX_CHANNELS:
            raise InvalidRequest(f"start.mediaFormat.channels must be 1 to {MAX_CHANNELS}", parameter="start.mediaFormat")
        custom = start.get("customParameters") or {}
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            raise InvalidRequest("start.customParameters must map names to strings", parameter="start.customParameters")
        key, callback = custom.get(KEY), custom.get(CALLBACK, self._query.get(CALLBACK))
        if callback is not None and not isinstance(callback, str):
            raise InvalidRequest("callback must be one URL", parameter=CALLBACK)
        params = {**self._query, **{name: value for name, value in custom.items() if name != KEY}}
        params.pop(CALLBACK, None)
        tracks = start.get("tracks") or ["inbound"]
        if not isinstance(tracks, list) or not tracks or not all(t in TRACKS for t in tracks):
            raise InvalidRequest("start.tracks must list inbound and/or outbound", parameter="start.tracks")
        track = params.get("track", "inbound" if "inbound" in tracks else tracks[0])
        if track not in tracks:
            raise InvalidRequest("track must be one of the stream's tracks (inbound or outbound)", parameter="track")
        options = self._options(params, rate, channels)
        self.stream_sid, self.track = sid, str(track)
        self.call_sid = call if isinstance(call, str) else None
        self.callback = str(callback) if callback else None
        return Opening(options=options, key=key)

    def _options(self, params: Mapping[str, Any], rate: int, channels: int) -> StreamOptions:
        """Deepgram's live options, the audio format being Twilio's."""
        params = {name: value for name, value in params.items() if name != CALLBACK}  # the route checks it
        for name, why in NOT_HERE.items():
            if params.get(name) is not None:
                raise InvalidRequest(f"{name} is not an option on Twilio streams: {why}", parameter=name)
        if params.get("track", "inbound") not in TRACKS:
            raise InvalidRequest("track must be inbound or outbound", parameter="track")
        options = Deepgram().parse({**params, "encoding": "mulaw", "sample_rate": str(rate)}, self._default_endpoint_s)
        return replace(options, channels=channels)

    def incoming(self, text: str) -> Incoming:
        message, event = json_message(text, "event")
        if event == "media":
            media = message.get("media")
            if not isinstance(media, dict):
                raise InvalidRequest("media must be an object", parameter="media")
            if media.get("track", self.track) != self.track:
                return Incoming()  # the other party: not this stream's track
            return Incoming(audio=base64_audio(media.get("payload"), "media.payload"))
        if event == "stop":
            return Incoming(control=CLOSE)
        if event in ("connected", "mark", "dtmf"):
            return Incoming()
        if event == "start":
            raise InvalidRequest("start is sent once, at the start of the stream", parameter="event")
        raise InvalidRequest("Unknown event: expected media, mark, dtmf or stop", parameter="event")

    def _ids(self) -> dict[str, Any]:
        return {"streamSid": self.stream_sid, "callSid": self.call_sid}

    def result(self, r: Result, ctx: Context) -> dict[str, Any]:
        t = r.transcript
        if r.is_final and t.text and self.callback:
            self._finals.append(
                {"start": round(r.start, 3), "duration": round(r.duration, 3), "text": t.text, "confidence": t.confidence}
            )
        return {
            "event": "transcript",
            **self._ids(),
            "track": self.track,
            "is_final": r.is_final,
            "speech_final": r.speech_final,
            "is_last": r.is_last,
            "text": t.text,
            "start": round(r.start, 3),
            "duration": round(r.duration, 3),
            "confidence": t.confidence,
            "words": [word_dict(w) for w in t.words],
        }

    def speech_started(self, at: float, utterance: int, channel: int = 0) -> dict[str, Any] | None:
        return {"event": "speech_started", **self._ids(), "timestamp": round(at, 3)}

    def utterance_end(self, last_word_end: float, channel: int = 0) -> dict[str, Any] | None:
        return {"event": "utterance_end", **self._ids(), "last_word_end": round(last_word_end, 3)}

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        return {"event": "metadata", **self._ids(), "request_id": ctx.request_id, "duration": round(duration, 3)}

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"event": "error", **self._ids(), **exc.body()}

    def report(self, ctx: Context, duration: float) -> dict[str, Any]:
        return {
            "event": "call_transcript",
            **self._ids(),
            "request_id": ctx.request_id,
            "track": self.track,
            "duration": round(duration, 3),
            "transcript": " ".join(f["text"] for f in self._finals),
            "utterances": self._finals,
        }
