"""Deepgram's text options through the real service (tiny.en through vLLM) and the real
`deepgram-sdk`: its answer types parse `search` hits, `metadata.extra` and `metadata.tags`, on the
file route and on the live stream, and the transforms change the text it reads."""

from __future__ import annotations

import pytest
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results

from .conftest import Server
from .helpers import JFK_FLAC, manifest, normalize
from .support import deepgram_client, deepgram_live

pytestmark = pytest.mark.e2e

JFK_TEXT = normalize(manifest()["whisper_jfk.flac"]["text"])  # "and so my fellow americans ask not what your country ..."


def test_sdk_parses_search_extra_and_tags(server: Server) -> None:
    result = deepgram_client(server).listen.v1.media.transcribe_file(
        request=JFK_FLAC.read_bytes(),
        model="nova-3",
        search=["country", "fellow americans"],
        extra=["team:gtm", "purpose:legal"],
        tag=["e2e"],
    )
    channel = result.results.channels[0]
    assert normalize(channel.alternatives[0].transcript) == JFK_TEXT  # search does not change the text
    country, fellow = channel.search
    assert country.query == "country" and fellow.query == "fellow americans"
    assert [h.snippet for h in country.hits[:2]] == ["country", "country"]  # said twice
    assert all(0.5 < h.confidence <= 1.0 and 0.0 <= h.start < h.end <= 11.0 for h in country.hits[:2])
    assert fellow.hits[0].snippet == "fellow americans" and fellow.hits[0].start < 3.0
    assert result.metadata.extra == {"team": "gtm", "purpose": "legal"}
    assert result.metadata.tags == ["e2e"]


def test_sdk_reads_the_transformed_text(server: Server) -> None:
    result = deepgram_client(server).listen.v1.media.transcribe_file(
        request=JFK_FLAC.read_bytes(), model="nova-3", replace=["country:nation", "fellow americans:friends"]
    )
    expected = JFK_TEXT.replace("country", "nation").replace("fellow americans", "friends")
    assert normalize(result.results.channels[0].alternatives[0].transcript) == expected


def test_live_search_and_extra_parse(server: Server) -> None:
    messages = deepgram_live(server, search="country", extra="team:gtm", replace="ask:request")
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    assert normalize(" ".join(r.channel.alternatives[0].transcript for r in finals)) == JFK_TEXT.replace("ask", "request")
    # The live channel type has no `search` field: the SDK keeps it as the JSON it came as.
    hits = [h for r in finals for s in r.channel.search for h in s["hits"] if s["query"] == "country"]  # type: ignore[attr-defined]
    assert sum(h["snippet"] == "country" for h in hits) == 2
    assert all(r.metadata.extra == {"team": "gtm"} for r in finals)  # type: ignore[attr-defined]
    assert isinstance(messages[-1], ListenV1Metadata) and messages[-1].extra == {"team": "gtm"}  # type: ignore[attr-defined]
