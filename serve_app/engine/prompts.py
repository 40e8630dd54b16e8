"""Whisper decoder prompts. English-only checkpoints (`*.en`) must get only
`<|startoftranscript|><|notimestamps|>` (language and task tokens make them return empty text);
multilingual ones take `<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`. Either may be
preceded by `<|startofprev|>` and the previous text's tokens, as openai/whisper does across the
windows of a long file: the model then continues the text instead of starting it afresh."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WhisperVocabulary:
    sot: int
    eot: int  # <|endoftext|>: every id from here on is a special token
    no_timestamps: int
    transcribe: int | None
    languages: dict[str, int]  # "en" -> token id; empty for English-only checkpoints
    previous: int | None = None  # <|startofprev|>
    translate: int | None = None  # <|translate|>: the multilingual models' speech-to-English task
    # Tokens Whisper never writes in a transcript (music notes, brackets, speaker dashes...): the
    # checkpoint's `suppress_tokens`, which openai/whisper and faster-whisper suppress by default.
    suppressed: tuple[int, ...] = ()
    # <|nospeech|> (<|nocaptions|> in older vocabularies): how likely the model finds the audio has
    # no speech, read where it would follow <|startoftranscript|> (guards.py `no_speech`).
    no_speech: int | None = None

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    @classmethod
    def from_model_dir(cls, path: Path) -> WhisperVocabulary:
        generation = json.loads((path / "generation_config.json").read_text())
        tokenizer = json.loads((path / "tokenizer.json").read_text())
        ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
        languages = {k.strip("<|>"): v for k, v in generation.get("lang_to_id", {}).items()}
        return cls(
            ids["<|startoftranscript|>"],
            ids["<|endoftext|>"],
            ids["<|notimestamps|>"],
            ids.get("<|transcribe|>"),
            languages,
            ids.get("<|startofprev|>"),
            ids.get("<|translate|>") if languages else None,
            tuple(generation.get("suppress_tokens", ())),
            ids.get("<|nospeech|>", ids.get("<|nocaptions|>")),
        )

    def prompt(self, language: str | None, previous: list[int] | None = None, translate: bool = False) -> list[int]:
        """The decoder prompt; `previous`: the preceding text's token ids, of which the last
        MAX_PREVIOUS_TOKENS are kept (the decoder's 448 positions hold them and the new text).
        `translate`: English text for speech in `language` (multilingual checkpoints only)."""
        context = [self.previous, *previous[-MAX_PREVIOUS_TOKENS:]] if previous and self.previous is not None else []
        if not self.multilingual:
            return [*context, self.sot, self.no_timestamps]
        lang = self.languages[language or "en"]
        task = self.translate if translate else self.transcribe
        assert task is not None  # multilingual Whisper vocabularies all have <|transcribe|> and <|translate|>
        return [*context, self.sot, lang, task, self.no_timestamps]


# openai/whisper keeps the last n_text_ctx // 2 - 1 tokens of previous text: half the decoder's
# 448 positions, so the prompt and max_tokens (224) of new text always fit.
MAX_PREVIOUS_TOKENS = 223
POSITIONS_PER_S = 50  # the encoder's conv stack turns 100 mel frames a second into 50 positions


def encoder_window_s(config: dict) -> float:
    """The audio window (seconds) a checkpoint's encoder takes, from its config.json."""
    return config["max_source_positions"] / POSITIONS_PER_S
