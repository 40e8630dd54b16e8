"""Model preparation, offline: Whisper weights converted for vLLM and the speaker encoder extracted
(`prepare`, run by scripts/setup.sh), and the speaker background for diarization (`speaker_background`)."""
