"""Live transcription with the Python SDK (`pip install ./clients/python`): a WAV file streamed over
`WS /v1/listen` at the pace of speech, printing interim results as they change and each final.
The key comes from the environment (never from code)."""

import os
import sys

from smallest import Client, LiveResult

API_URL = os.environ.get("API_URL", "http://localhost:7100")
AUDIO_FILE = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUDIO_FILE", "audio.wav")  # 16-bit PCM WAV

with Client(api_url=API_URL) as client:  # LICENSE_KEY from the environment
    with client.stream_file(AUDIO_FILE, interim_results=True, smart_format=True) as stream:
        for message in stream:
            if isinstance(message, LiveResult) and message.is_final:
                print(f"final   [{message.start:6.2f}s] {message.text}")
            elif isinstance(message, LiveResult):
                print(f"interim [{message.start:6.2f}s] {message.text}")
    print("transcript:", stream.transcript)
