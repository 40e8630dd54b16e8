"""The tools' layout holds: scripts/ keeps only the entry points, the tools and tests import each other
as packages (no `sys.path` edits), and no test module imports another (shared fakes live in
tests/support.py); and the streaming benchmark's protocol adapters speak what the server's dialects
read and read what they send."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serve_app.api.live import Deepgram
from serve_app.api.pulse_live import Smallest
from serve_app.api.realtime import Realtime
from serve_app.api.twilio import Twilio
from serve_app.errors import InvalidRequest
from serve_app.pipeline.transcript import Transcript, Word
from serve_app.stream.audio_in import MULAW
from serve_app.stream.protocol import CLOSE, FINALIZE, Context, Result
from tools import ROOT
from tools.bench import live_clients

ENTRY_POINTS = {"setup.sh", "run.sh", "test.sh", "bench.sh", "fuzz.sh"}
SOURCES = sorted([*(ROOT / "tools").rglob("*.py"), *(ROOT / "tests").glob("*.py")])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_scripts_holds_only_the_entry_points() -> None:
    assert {p.name for p in (ROOT / "scripts").iterdir()} == ENTRY_POINTS


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_edits_the_import_path(path: Path) -> None:
    edits = [
        node.lineno
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"
    ]
    assert edits == [], f"sys.path used at lines {edits}"


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("*.py")), ids=lambda p: p.name)
def test_no_test_module_imports_another(path: Path) -> None:
    others = [m for m in _imported_modules(_tree(path)) if m.split(".")[-1].startswith("test_")]
    assert others == [], f"import shared code from tests/support.py or tests/helpers.py instead: {others}"


# --- the streaming benchmark's protocol adapters (tools/bench/live_clients.py), against the server's own dialects


def _said(text: str, start: float, duration: float) -> Transcript:
    """A decode's transcript with words shared out by length over its utterance, as an unaligned one's are."""
    step = duration / len(text.split())
    words = [
        Word(w.lower(), w, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9) for i, w in enumerate(text.split())
    ]
    return Transcript(text, words, 0.9, duration, "en")


FINAL = Result(_said("Ask not what", 1.0, 2.0), 1.0, 2.0, is_final=True, speech_final=True, utterance=0)
INTERIM = Result(_said("Ask", 1.0, 0.5), 1.0, 0.5, is_final=False, utterance=0)
ERROR = InvalidRequest("Unknown event", parameter="type")


def _heard(client: live_clients.Deepgram, message: Any) -> list[live_clients.Heard]:
    """What the adapter makes of a server message (or several), after a trip through JSON as on the wire."""
    return [client.read(json.loads(json.dumps(m))) for m in (message if isinstance(message, list) else [message])]


@pytest.mark.parametrize(
    ("name", "dialect", "params"),
    [
        ("deepgram", Deepgram, {"encoding": "linear16", "sample_rate": "16000", "interim_results": "true"}),
        ("pulse", Smallest, {"language": "en", "encoding": "linear16", "sample_rate": "16000"}),
    ],
)
def test_binary_frame_adapters_read_finals_interims_and_errors(name: str, dialect: Any, params: dict) -> None:
    server, client = dialect(), live_clients.adapter(name)
    ctx = Context("r", "m", server.parse(params, 0.3))
    assert client.frame(b"\x01\x02") == b"\x01\x02" and client.frame_bytes() == 3200  # 100 ms of 16 kHz linear16
    assert server.incoming(client.closing()[0]).control == CLOSE
    [final] = _heard(client, server.result(FINAL, ctx))
    assert (final.final, final.until, final.interim) == ("Ask not what", 3.0, False)
    [interim] = _heard(client, server.result(INTERIM, ctx))
    assert interim.interim and interim.final is None
    [error] = _heard(client, server.error(ERROR))
    assert error.error is not None and "INVALID_REQUEST" in error.error


def test_the_twilio_adapter_speaks_twilios_messages() -> None:
    server, client = Twilio(), live_clients.adapter("twilio")
    ctx = Context("r", "m", server.parse({}, 0.3))
    connected, start = client.opening("K", interims=True)
    assert server.opening(connected, ctx).options is None
    opened = server.opening(start, ctx)
    assert opened.key == "K" and opened.options is not None and opened.options.interim_results
    assert (opened.options.encoding, opened.options.sample_rate) == ("mulaw", 8000)
    assert client.frame_bytes() == 160  # 20 ms of 8 kHz mu-law, as Twilio sends it
    assert server.incoming(str(client.frame(b"\x01\x02"))).audio == b"\x01\x02"
    assert server.incoming(client.closing()[0]).control == CLOSE
    [final] = _heard(client, server.result(FINAL, ctx))
    assert (final.final, final.until) == ("Ask not what", 3.0)
    assert _heard(client, server.result(INTERIM, ctx))[0].interim
    assert "INVALID_REQUEST" in str(_heard(client, server.error(ERROR))[0].error)


def test_the_realtime_adapter_reads_items_and_closes_at_the_barrier() -> None:
    server, client = Realtime(), live_clients.adapter("realtime")
    ctx = Context("0123456789abcdef0123", "tiny.en", server.parse({"intent": "transcription"}, 0.3), ("en",))
    assert not _heard(client, server.greeting(ctx, {"authorization": "Bearer K"}, []))[0].last
    [update] = client.opening("K", interims=True)
    updated = server.opening(update, ctx).reply
    assert not _heard(client, updated)[0].last  # the opening's session.updated is not the barrier
    options = server.options(server.config)
    assert (options.encoding, options.sample_rate, options.endpoint_s, options.interim_results) == ("linear16", 24000, 0.5, False)
    assert client.frame_bytes() == 4800  # 100 ms of 24 kHz pcm16
    assert server.incoming(str(client.frame(b"\x01\x02"))).audio == b"\x01\x02"
    assert server.result(INTERIM, ctx) is None  # no interims: nothing to read
    # an item a pause committed reaches its speech_stopped's end
    _heard(client, server.speech_started(1.3, 0))
    heard = _heard(client, server.result(FINAL, ctx))
    assert [(h.final, h.until) for h in heard if h.final is not None] == [("Ask not what", 3.0)]
    # one the client's commit ended (no speech_stopped): its speech start less the pre-roll, plus its seconds
    _heard(client, server.speech_started(5.3, 1))
    committed = Result(_said("you can", 5.0, 1.5), 5.0, 1.5, is_final=True, from_finalize=True, utterance=1)
    heard = _heard(client, server.result(committed, ctx))
    assert [(h.final, h.until) for h in heard if h.final is not None] == [("you can", 6.5)]
    commit, barrier = client.closing()
    assert server.incoming(commit).control == FINALIZE
    reply = server.incoming(barrier).reply
    assert reply is not None and _heard(client, reply)[0].last
    assert "INVALID_REQUEST" in str(_heard(client, server.error(ERROR))[0].error)


def test_audio_goes_on_the_wire_in_each_protocols_format() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)  # 1 s at 16 kHz
    wire = {name: live_clients.adapter(name).encode(tone) for name in live_clients.ADAPTERS}
    assert len(wire["deepgram"]) == len(wire["pulse"]) == 32000 and len(wire["realtime"]) == pytest.approx(48000, abs=64)
    assert len(wire["twilio"]) == pytest.approx(8000, abs=32)
    expanded = MULAW[np.frombuffer(wire["twilio"], np.uint8)].astype(np.float32) / 32768  # the server's expansion
    back = live_clients.resampled(tone, 8000)[: expanded.size]
    assert np.abs(expanded - back).max() < 0.02  # mu-law's step at half scale is about 1/64 of it


def test_an_utterance_is_answered_by_the_first_final_that_reaches_its_end() -> None:
    finals = [(1.0, 2.0, "a"), (2.5, None, ""), (4.0, 6.0, "b c")]
    assert live_clients.covered(finals, 1.5) == 1.0
    assert live_clients.covered(finals, 2.04) == 1.0  # within a VAD frame's slack
    assert live_clients.covered(finals, 5.0) == 4.0
    assert live_clients.covered(finals, 7.0) is None  # missing
    assert live_clients.percentile([3.0, 1.0, 2.0], 0.95) == 3.0 and live_clients.percentile([], 0.5) is None
    with pytest.raises(ValueError, match="unknown protocol"):
        live_clients.adapter("sip")
