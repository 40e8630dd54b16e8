"""Audio stages, in request order: source (where the bytes come from), fetch (safe URL download),
decode (bytes -> 16 kHz mono float32), chunk (<= 30 s windows cut at quiet points)."""

SAMPLE_RATE = 16000
