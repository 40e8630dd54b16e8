"""The engine side: the engine deployment and everything that needs torch or vLLM (prompts, word
alignment, diarization, the lifeline that ties vLLM's processes to their replica). The ingress side
never imports this package; what crosses between the two is in `serve_app.types`."""
