"""Live transcription over WebSocket, in stages: options (the handshake's query), audio_in (binary
frames -> 16 kHz mono float32), segment (voice activity -> utterances, endpointing), channels (a
segmenter per channel transcribed), speakers (diarized finals' speaker numbers across a stream),
messages (the Deepgram and Smallest wire shapes), session (one connection: receive, segment, decode, send).

Whisper is not a streaming model: an utterance is decoded again as it grows (interim results) and
once more when the speaker pauses (the final result), each decode a request in the same batched
engine as file transcription."""
