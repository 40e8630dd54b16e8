"""The dialect-free stages a file goes through, in request order: `source` (the upload or URL and
its options as sent), `fetch` (+ `addresses`: which URLs may be fetched), `decode`, `chunk`,
`engine_client` (the policy for a busy, missing or slow engine), `stitch` (engine output into one
`transcript`), `transforms` (post-processing of the text: `formatting` for smart_format and
`numerals=true`, `spelled` for `numerals=false`), `meter`. `files.py` runs them;
`request.py` is the typed request every API dialect parses into."""
