"""What the decoder reads before the audio: Whisper's previous-text prompt, which steers spelling and
style because the model continues the text it is given (openai/whisper's `initial_prompt`).

- Keyterms (Deepgram `keyterm`, `keywords`; Pulse `keywords`): the terms as a comma list, so names
  and jargon the model does not know are spelled as the caller spells them. A prompt cannot weight
  one term over another, so a `keywords` intensifier only has to be positive; it cannot suppress
  a word (Deepgram's negative intensifier), which is refused.
- Filler words (`filler_words=true`): Whisper was trained mostly on clean transcripts and drops "um"
  and "uh"; a prompt written with them makes it keep them (the style OpenAI's prompting guide gives).
- The caller's own prompt (OpenAI realtime's `transcription.prompt`, as whisper-1 takes it) comes first.
- The file's or stream's text so far, when context is on (engine_client.context), comes last: the
  decoder continues from it, and the engine keeps a prompt's end when it is too long.
"""

from __future__ import annotations

from .engine_client import CONTEXT_CHARS
from .request import TranscriptionRequest

# OpenAI's prompting guide's example. Measured on the spontaneous call (tools.prompting): 4 of its 9
# fillers kept, where the same with "Uh, so, um," after it kept 2 and no prompt none.
FILLER_STYLE = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."
MAX_KEYTERMS = 50
MAX_KEYTERM_CHARS = 64
MAX_KEYTERMS_CHARS = 500  # about 110 tokens: half the prompt's 223, the rest for context
MAX_PROMPT_CHARS = 500  # a caller's own prompt: the same share


def decoder_prompt(request: TranscriptionRequest, previous: str = "") -> str:
    """The prompt for one chunk or utterance; "" when the request asks for nothing."""
    parts = [request.prompt] if request.prompt else []
    if request.filler_words:
        parts.append(FILLER_STYLE)
    if request.keyterms:
        parts.append(", ".join(request.keyterms) + ".")
    budget = CONTEXT_CHARS - len(" ".join(parts))  # so that the engine's cut takes context, not the terms
    if previous and budget > 0:
        parts.append(previous if len(previous) <= budget else previous[-budget:].split(" ", 1)[-1])
    return " ".join(parts)
