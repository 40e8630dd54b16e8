"""Caption answers any route gives for `response_format=srt|vtt`: cues built from the transcript's
caption-sized segments (pipeline/transcript.py)."""

from __future__ import annotations

from ..pipeline.transcript import Transcript, segments


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(t: Transcript) -> str:
    """SubRip; when diarized, a `[speaker N]` line opens each change of speaker (as deepgram-captions does)."""
    blocks, current = [], None
    for i, s in enumerate(segments(t.words), 1):
        speaker = s.words[0].speaker
        label = f"[speaker {speaker}]\n" if speaker is not None and speaker != current else ""
        current = speaker
        blocks.append(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{label}{s.text}\n")
    return "\n".join(blocks)


def vtt(t: Transcript) -> str:
    """WebVTT; when diarized, each cue is a voice span (`<v Speaker N>`, as deepgram-captions does)."""
    blocks = []
    for s in segments(t.words):
        label = "" if s.words[0].speaker is None else f"<v Speaker {s.words[0].speaker}>"
        blocks.append(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{label}{s.text}\n")
    return "\n".join(["WEBVTT\n", *blocks])
