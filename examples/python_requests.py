"""The seed's Python `requests` example, with the key from the environment (never in code)."""

import os

import requests

LICENSE_KEY = os.environ["LICENSE_KEY"]
API_URL = os.environ.get("API_URL", "http://localhost:7100")
AUDIO_URL = os.environ.get("AUDIO_URL", "https://example.com/audio.wav")

headers = {
    "Authorization": f"Token {LICENSE_KEY}",
    "Content-Type": "application/json",
}
response = requests.post(
    f"{API_URL}/v1/listen",
    headers=headers,
    json={"url": AUDIO_URL},
)
print(response.json())
