"""The APIs the service speaks, one module per dialect: each owns its option names (read into the
dialect-free `pipeline.request.TranscriptionRequest`) and its answer shape.

- `listen.py`: Smallest Self-Host and Deepgram, `POST /v1/listen`; `live.py`: Deepgram live, `WS /v1/listen`
- `pulse.py`: Smallest Pulse, `POST /waves/v1/stt/`; `pulse_live.py`: `WS /waves/v1/stt/live`
- `openai.py`: `POST /v1/audio/transcriptions`; `captions.py`: srt and vtt for any route
- `usage.py`: `GET /v1/usage`; `health.py`: `GET /health`

Shared by them: `params.py`, `text_params.py` and `live_params.py` (reading option values), `formats.py` (answers by
name), `files.py` and `streaming.py` (the file and live routes), `access.py` (keys), `http.py`
(errors as JSON, metrics, header cap). Nothing here is imported by `pipeline/`, `stream/` or
`licensing/`."""
