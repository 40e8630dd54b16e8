"""The decoder prompt: keyterms and the filler style first, the context after them within one budget."""

from __future__ import annotations

from serve_app.pipeline.engine_client import CONTEXT_CHARS
from serve_app.pipeline.prompt import FILLER_STYLE, decoder_prompt
from serve_app.pipeline.request import TranscriptionRequest


def test_nothing_asked_is_an_empty_prompt() -> None:
    assert decoder_prompt(TranscriptionRequest()) == ""
    assert decoder_prompt(TranscriptionRequest(), "So far.") == "So far."


def test_terms_survive_a_long_context() -> None:
    request = TranscriptionRequest(keyterms=("Kowloon", "Hong Kong"), filler_words=True)
    context = " ".join(f"word{i}" for i in range(400))  # far over the budget
    prompt = decoder_prompt(request, context)
    assert prompt.startswith(f"{FILLER_STYLE} Kowloon, Hong Kong. word")
    assert len(prompt) <= CONTEXT_CHARS and prompt.endswith("word399")
    kept = prompt.split("Hong Kong. ", 1)[1].split()
    assert kept == [f"word{i}" for i in range(400 - len(kept), 400)]  # whole words, the latest ones
