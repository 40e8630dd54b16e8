"""The per-set accuracy suite's pure parts: grouping the manifest, pooled WER, the table.
(The run itself needs the services and the models: tools.accuracy_sets' output shows it.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serve_app.pipeline.decode import decode
from tools.accuracy_sets import (
    NO_SPEECH,
    Score,
    clip_file,
    group_clips,
    markdown,
    no_speech_clips,
    no_speech_table,
    ratio,
    score,
    set_row,
    table,
)


def _row(set_: str, language: str = "en", text: str = "a b") -> dict:
    return {"path": f"{set_}/{language}.wav", "set": set_, "language": language, "duration_s": 2.0, "text": text}


def test_clips_group_by_set_and_language_english_first_without_diarization() -> None:
    rows = [_row("multilingual", "fr"), _row("ljspeech"), _row("diarization"), _row("multilingual", "de"), _row("ljspeech")]
    groups = group_clips(rows)
    assert list(groups) == [("ljspeech", "en"), ("multilingual", "de"), ("multilingual", "fr")]
    assert len(groups[("ljspeech", "en")]) == 2


def test_sets_and_max_clips_narrow_the_groups() -> None:
    rows = [_row("ljspeech"), _row("ljspeech"), _row("ljspeech"), _row("arctic"), _row("multilingual", "de")]
    assert {k: len(v) for k, v in group_clips(rows, {"ljspeech", "multilingual"}, 2).items()} == {
        ("ljspeech", "en"): 2,
        ("multilingual", "de"): 1,
    }


def test_wer_is_pooled_over_clips_not_averaged() -> None:
    # 1 error in 4 words, 1 in 2: pooled 2/6, where the mean of the clips' WERs would be 0.375.
    s = score(["a b c d", "e f"], ["a b x d", "e"], "en")
    assert s == Score(errors=2, words=6)
    assert s.wer == pytest.approx(1 / 3)


def test_scoring_is_on_normalized_text() -> None:
    assert score(["Hello, World! It's"], ["hello world its"], "en").errors == 0
    assert score(["a"], [""], "en") == Score(1, 1)  # nothing heard: every word deleted
    assert Score(0, 0).wer is None


def test_chinese_and_japanese_are_scored_per_character() -> None:
    assert score(["你好，世界。"], ["你好世"], "zh") == Score(errors=1, words=4)


def test_ratio_needs_both_sides() -> None:
    assert ratio(0.1, 0.05) == 2.0
    assert ratio(None, 0.05) is None and ratio(0.1, 0.0) is None and ratio(0.1, None) is None


def test_a_row_and_its_table_line() -> None:
    clips = [_row("arctic", text="one two three four"), _row("arctic", text="five six")]
    texts = {
        "service": ["one two three four", "five seven"],
        "faster_whisper": ["one two three", "five sixes"],
        "streamed": ["one two tree four", "five seven"],
    }
    row = set_row(("arctic", "en"), clips, texts)
    assert row["clips"] == 2 and row["audio_s"] == 4.0 and row["reference_words"] == 6 and row["unit"] == "word"
    assert row["wer"] == {"service": 0.1667, "faster_whisper": 0.3333, "streamed": 0.3333}
    assert row["service_vs_faster_whisper"] == 0.5 and row["streamed_vs_file"] == 2.0
    assert "| arctic | en | 2 | 4.0 | 6 | 16.7% | 33.3% | 0.50x | 33.3% | 2.00x |" in table([row])


def test_rows_without_streams_or_with_characters_read_as_such() -> None:
    row = set_row(
        ("multilingual", "ja"),
        [_row("multilingual", "ja", "こんにちは")],
        {"service": ["こんにちは"], "faster_whisper": ["こんにちわ"]},
    )
    line = table([row]).splitlines()[-1]
    assert line == "| multilingual | ja (CER) | 1 | 2.0 | 5 | 0.0% | 20.0% | 0.00x | – | – |"


def test_the_page_says_when_how_and_what_the_columns_mean() -> None:
    results = {
        "date": "2026-12-01 10:00 UTC",
        "machine": {"cpus": 2},
        "command": ".venv/bin/python -m tools.accuracy_sets",
        "run_s": 1200,
        "code": "abc1234",
        "faster_whisper_version": "1.2.1",
        "stream_pace": 4.0,
        "sets": [set_row(("arctic", "en"), [_row("arctic")], {"service": ["a b"]})],
    }
    page = markdown(results)
    assert "2026-12-01 10:00 UTC, on 2 CPUs, in 20 minutes, the service's code\nat abc1234:" in page
    assert "    .venv/bin/python -m tools.accuracy_sets\n" in page
    assert "| arctic | en | 1 | 2.0 | 2 | 0.0% | – | – | – | – |" in page
    assert "**streamed / file**" in page


def test_audio_without_speech_is_made_the_same_every_run(tmp_path: Path) -> None:
    first, again = no_speech_clips(tmp_path / "a"), no_speech_clips(tmp_path / "b")
    assert [c["name"] for c in first] == ["silence", "hiss", "loud hiss", "rumble", "hum"]
    for clip, same in zip(first, again):
        assert clip["set"] == NO_SPEECH and clip["text"] == "" and clip["path"].startswith(f"{NO_SPEECH}/")
        audio = decode(clip_file(clip, tmp_path).read_bytes(), 60)
        assert audio.size == 5 * 16000 and np.array_equal(audio, decode(clip_file(same, tmp_path).read_bytes(), 60))
        # silence is zeros; the others are loud enough for a model to hear, and never clip
        assert (np.abs(audio).max() == 0) == (clip["name"] == "silence") and np.abs(audio).max() < 1
    assert clip_file({"path": "arctic/a.wav"}, tmp_path) == tmp_path / "arctic/a.wav"


def test_every_word_written_for_no_speech_is_an_error() -> None:
    assert score(["", ""], ["you", "Thank you."], "en") == Score(errors=3, words=0)
    assert score([""], [""], "en") == Score(0, 0)


def test_audio_without_speech_has_its_own_table() -> None:
    row = set_row((NO_SPEECH, "en"), [_row(NO_SPEECH, text="")], {"service": [""], "faster_whisper": ["you"]})
    assert row["errors"] == {"service": 0, "faster_whisper": 1} and row["wer"] == {"service": None, "faster_whisper": None}
    assert NO_SPEECH not in table([row])
    lines = no_speech_table([{"clip": "hum", "seconds": 5.0, "service": "", "faster_whisper": "you"}]).splitlines()
    assert lines[0] == "## Audio without speech" and lines[2].startswith("Clips of 5 s in which nobody speaks")
    assert lines[-1] == '| hum | (nothing) | "you" |'
    assert no_speech_table([]) == ""
