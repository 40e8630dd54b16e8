"""Whisper's timestamp rules (tools/bench/timestamp_rules.py) on a toy vocabulary: text ids 0-4,
<|endoftext|> 5, <|notimestamps|> 6, timestamps 7-12 (a 0.1 s window: <|0.00|> .. <|0.10|>), and one
id past them."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from tools.bench.timestamp_rules import TimestampRules, request_args  # noqa: E402

EOT, NO_TS = 5, 6


def rules() -> TimestampRules:
    return TimestampRules(**request_args(EOT, NO_TS, window_s=0.1)["whisper_timestamps"])


# Text and the end likelier, one by one, than every timestamp together: only the other rules act.
TEXT_LIKELY = [3.0] * 6 + [0.0] * 8


def allowed(output_ids: list[int], logits: list[float] = TEXT_LIKELY) -> set[int]:
    row = torch.tensor(logits)
    return {i for i, v in enumerate(rules()(output_ids, row).tolist()) if v != -math.inf}


def test_the_ids_follow_notimestamps_one_per_20_ms() -> None:
    assert request_args(EOT, NO_TS, window_s=0.1)["whisper_timestamps"] == {"eot": 5, "no_timestamps": 6, "first": 7, "last": 12}


def test_the_text_starts_with_a_timestamp_within_the_window() -> None:
    assert allowed([]) == {7, 8, 9, 10, 11, 12}


def test_a_segment_end_is_followed_by_a_timestamp_no_earlier_or_the_end() -> None:
    # <|0.02|> text text <|0.06|>: the next segment starts at 0.06 or later, or the text ends
    assert allowed([8, 1, 2, 10]) == {EOT, 10, 11, 12}


def test_after_a_pair_comes_text_and_no_timestamp() -> None:
    assert allowed([8, 1, 10, 10]) == {0, 1, 2, 3, 4, EOT}


def test_inside_a_segment_timestamps_only_go_forward() -> None:
    assert allowed([8, 1, 10, 10, 2]) == {0, 1, 2, 3, 4, EOT, 11, 12}


def test_timestamps_likelier_together_than_any_text_token_are_taken() -> None:
    # after <|0.02|>: each later timestamp alone less likely than text id 0, the four together more
    logits = [1.0, 0, 0, 0, 0, 0, 0, *[0.5] * 6, 0]
    assert allowed([8, 1], logits) == {9, 10, 11, 12}
    logits[0] = 5.0  # now text id 0 is likelier than all timestamps together
    assert 0 in allowed([8, 1], logits)


def test_notimestamps_and_ids_past_the_window_are_never_taken() -> None:
    for output in ([], [8, 1], [8, 1, 10], [8, 1, 10, 10]):
        assert not {NO_TS, 13} & allowed(output)
