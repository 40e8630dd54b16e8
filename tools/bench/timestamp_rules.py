"""Whisper's timestamp rules as a vLLM logits processor, for tools/bench/decoding.py: is the words'
gain faster-whisper gets from decoding with timestamp tokens (its default) in those rules?

Decoded without <|notimestamps|>, Whisper writes its text in segments, `<|0.00|> text <|2.40|>`.
openai/whisper and faster-whisper constrain those tokens at every step (`ApplyTimestampRules` in
openai/whisper's decoding.py). Measured, the rules did not bring that gain to vLLM's decoding
(docs/accuracy/windows.md), so the service does not use them. The rules, per request:

- the first token is a timestamp, at most MAX_INITIAL_S into the window;
- timestamps come in pairs (a segment's end and the next one's start), except before the end;
- they never go back, and never past the encoder's window;
- where all timestamps together are likelier than any single text token, one of them is taken.

A request opts in through `SamplingParams.extra_args[KEY]`, the vocabulary's ids the rules need;
vLLM loads this class in its engine process (`logits_processors` in the engine's arguments).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

if TYPE_CHECKING:
    from vllm import SamplingParams

KEY = "whisper_timestamps"
MAX_INITIAL_S = 1.0
SECONDS_PER_TIMESTAMP = 0.02


def request_args(eot: int, no_timestamps: int, window_s: float) -> dict[str, Any]:
    """What a request puts in `extra_args` to be decoded under the rules. Timestamp tokens follow
    <|notimestamps|> in every Whisper vocabulary, one per 20 ms from <|0.00|>."""
    first = no_timestamps + 1
    return {
        KEY: {"eot": eot, "no_timestamps": no_timestamps, "first": first, "last": first + round(window_s / SECONDS_PER_TIMESTAMP)}
    }


class TimestampRules:
    """The rules for one request, called by vLLM with its output ids so far and its logits row."""

    def __init__(self, eot: int, no_timestamps: int, first: int, last: int) -> None:
        self.eot, self.no_timestamps, self.first, self.last = eot, no_timestamps, first, last

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        ninf = float("-inf")
        logits[self.no_timestamps] = ninf
        logits[self.last + 1 :] = ninf  # past the window, and ids beyond the vocabulary's timestamps
        if not output_ids:  # a segment starts the text, near the window's start
            logits[: self.first] = ninf
            logits[self.first + round(MAX_INITIAL_S / SECONDS_PER_TIMESTAMP) + 1 :] = ninf
            return logits
        last_was = output_ids[-1] >= self.first
        penultimate_was = len(output_ids) < 2 or output_ids[-2] >= self.first
        if last_was:
            if penultimate_was:  # a pair just closed: text (or the end) follows
                logits[self.first :] = ninf
            else:  # a segment's end: the next one's start, or the end
                logits[: self.eot] = ninf
        stamps = [i for i in output_ids if i >= self.first]
        if stamps:  # never back; a new segment starts no earlier than the last one ended
            logits[self.first : stamps[-1] + (0 if last_was and not penultimate_was else 1)] = ninf
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if torch.logsumexp(logprobs[self.first :], dim=-1) > logprobs[: self.first].max():
            logits[: self.first] = ninf
        return logits


class WhisperTimestampRules(AdapterLogitsProcessor):
    """vLLM's per-request adapter: requests without KEY in their extra_args are left alone."""

    def is_argmax_invariant(self) -> bool:
        return False  # it decides which token greedy decoding takes

    def new_req_logits_processor(self, params: SamplingParams) -> TimestampRules | None:
        ids = (params.extra_args or {}).get(KEY)
        return TimestampRules(**ids) if ids else None
