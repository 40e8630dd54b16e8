"""The dialect-free stages between an API module and the engine. The audio stages live in
`serve_app/audio/` (source, fetch, decode, chunk) and stitching in `serve_app/transcript.py`; the
engine-client policy is here."""
