"""Self-hosted speech-to-text service: Ray Serve ingress + vLLM Whisper engine."""
