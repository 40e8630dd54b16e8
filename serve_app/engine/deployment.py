"""The engine deployment: a vLLM async engine on a Whisper checkpoint. Arrays of 16 kHz audio in,
decoded text with per-token log-probabilities out; it knows nothing of HTTP, keys or formats.

Concurrency is vLLM's job: every concurrent `transcribe` call becomes one request in vLLM's
continuous batch, so chunks of many HTTP requests share encoder and decoder passes. No
`@serve.batch` in front of it: that would only add waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..settings import EngineArgs, repo_path
from ..types import SAMPLE_RATE, ChunkTranscript, EngineInfo, Token, Turn
from . import lifeline
from .guards import MAX_COMPRESSION_RATIO, compression_ratio, is_silent, no_speech, trailing_repeat
from .precision import engine_dtype, use_int8_linear
from .prompts import WhisperVocabulary, encoder_window_s
from .windows import hf_overrides

if TYPE_CHECKING:  # for annotations only: vLLM is imported in the replica, after `_configure_cpu`
    from vllm import SamplingParams
    from vllm.config.model import ModelDType
    from vllm.inputs import ExplicitEncoderDecoderPrompt
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger("ray.serve")  # Serve's logger: its records reach the replica's log


def _configure_cpu(args: EngineArgs) -> None:
    """vLLM reads these at import: they must be set before `import vllm`."""
    # The legacy whole-GiB variable would override `kv_cache_memory_bytes`: tiny needs ~120 MB.
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    if args.cpu_omp_threads_bind is not None:
        bind = args.cpu_omp_threads_bind
        if bind == "all":  # every core: by default vLLM keeps one back for its scheduler
            bind = f"0-{(os.cpu_count() or 1) - 1}"
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)


def yield_cpu(niceness: int, name: str = "Worker") -> None:
    """Lower the priority of this process's `name` children (vLLM's workers), every thread of them:
    Linux nices threads one by one. On a few cores the worker's OpenMP threads otherwise delay the
    ingress and the engine replica that feed it (measured in docs/benchmarks.md). Raising niceness
    needs no privilege; a priority already lower is kept."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if name not in child.name():
                continue
            for thread in child.threads():
                os.setpriority(os.PRIO_PROCESS, thread.id, max(niceness, os.getpriority(os.PRIO_PROCESS, thread.id)))
        except (psutil.Error, OSError):  # gone, or not ours to change: leave it
            continue


class WhisperEngine:
    def __init__(self, args: EngineArgs | dict[str, Any]) -> None:
        self.args = EngineArgs.model_validate(args)
        lifeline.arm()  # vLLM's processes die with this replica, however it ends
        _configure_cpu(self.args)
        # Imported here, in the engine replica: the app builder imports this module only to declare
        # the deployment, and must not load torch or scipy for that.
        from tokenizers import Tokenizer
        from vllm import SamplingParams

        from .align import Aligner
        from .diarize import Diarizer

        path = self.args.model_path()
        self.vocab = WhisperVocabulary.from_model_dir(Path(path))
        self.tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))  # previous text -> prompt ids
        checkpoint_s = encoder_window_s(json.loads((Path(path) / "config.json").read_text()))
        # The longest chunk the ingress cuts audio into: the checkpoint's window, or the policy's cap on it.
        self.window_s = self.args.window.longest_s(checkpoint_s) if self.args.window else checkpoint_s
        self.aligner = Aligner(path, window_s=self.window_s)
        self.diarizer = Diarizer(repo_path(self.args.speaker_model))
        self._align_pool = ThreadPoolExecutor(1, thread_name_prefix="align")  # one at a time: vLLM has the cores
        self._sampling_params = SamplingParams  # vllm is imported here, after the CPU variables are set
        self.sampling = self._params(0.0)
        self.sampling_in_context = self._params(0.0, no_speech=False)
        self.engine = self._start_engine(path)
        if self.args.cpu_worker_niceness is not None:
            yield_cpu(self.args.cpu_worker_niceness)

    def _start_engine(self, path: str) -> AsyncLLM:
        """vLLM's engine on the checkpoint at `path`, its processes started. Runs after `_configure_cpu`:
        vLLM reads the CPU variables when imported."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

        on_cpu = current_platform.is_cpu()
        dtype = engine_dtype(self.args.dtype, on_cpu)
        int8 = use_int8_linear(self.args.linear, on_cpu) and self.args.window is not None  # our model class does it
        logger.info("engine dtype: %s (setting: %s), linear layers: %s", dtype, self.args.dtype, "int8" if int8 else dtype)
        return AsyncLLM.from_engine_args(
            AsyncEngineArgs(
                model=path,
                served_model_name=self.args.model_name(),
                dtype=cast("ModelDType", dtype),
                max_num_seqs=self.args.max_num_seqs,
                max_model_len=448,
                enforce_eager=self.args.enforce_eager,
                gpu_memory_utilization=self.args.gpu_memory_utilization,
                kv_cache_memory_bytes=self.args.kv_cache_mb * 2**20 if self.args.kv_cache_mb else None,
                limit_mm_per_prompt={"audio": 1},
                disable_log_stats=True,  # no periodic throughput lines in the log; the metrics below stay on
                # Fitted windows, when the config asks (windows.py), and the encoder's attention on CPU.
                hf_overrides=hf_overrides(self.args.window, self.args.encoder_attention, int8),
            ),
            # vLLM's scheduler metrics (requests running = batch size, waiting = queue depth, queue
            # time, tokens per step) through Ray's metrics export, beside the service's own.
            stat_loggers=[RayPrometheusStatLogger] if self.args.engine_metrics else None,
        )

    async def info(self) -> EngineInfo:
        await self.engine.check_health()
        return EngineInfo(self.args.model_name(), self.vocab.multilingual, sorted(self.vocab.languages) or ["en"], self.window_s)

    async def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Whisper's language identification: after <|startoftranscript|> the model's next token is a
        language token. One decoding step restricted to those tokens; returns (code, probability)."""
        if not self.vocab.multilingual:
            return "en", 1.0
        by_id = {token_id: code for code, token_id in self.vocab.languages.items()}
        params = self._sampling_params(temperature=0.0, max_tokens=1, logprobs=0, allowed_token_ids=list(by_id))
        completion = (await self._generate(self._prompt(audio, [self.vocab.sot]), params)).outputs[0]
        token_id = completion.token_ids[0]
        logprob = completion.logprobs[0][token_id].logprob if completion.logprobs else 0.0
        return by_id[token_id], round(float(np.exp(logprob)), 4)

    @staticmethod
    def _prompt(audio: np.ndarray, decoder_ids: list[int]) -> ExplicitEncoderDecoderPrompt:
        return {
            "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, SAMPLE_RATE)}},
            "decoder_prompt": {"prompt_token_ids": decoder_ids},
        }

    def _params(self, temperature: float, no_speech: bool = True) -> SamplingParams:
        """`no_speech`: also return the prompt's log-probabilities, for the no-speech rule. Free for a
        prompt of 2-4 tokens; with 100-223 tokens of previous text it cost 11-17% more time (one
        log-softmax over the vocabulary per prompt position), so prompts with context go without."""
        # A fixed seed keeps fallback decodes reproducible.
        return self._sampling_params(
            temperature=temperature,
            max_tokens=self.args.max_tokens,
            logprobs=0,
            prompt_logprobs=1 if no_speech and self.vocab.no_speech is not None else None,
            seed=0 if temperature else None,
            logit_bias=dict.fromkeys(self.vocab.suppressed, -100.0) or None,
        )

    async def _generate(self, prompt: ExplicitEncoderDecoderPrompt, params: SamplingParams) -> RequestOutput:
        final: RequestOutput | None = None
        async for output in self.engine.generate(prompt, params, uuid.uuid4().hex):
            final = output
        assert final is not None  # vLLM's stream ends with the request's finished output, or raises
        return final

    async def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        align: bool = False,
        previous: str = "",
        translate: bool = False,
        live: bool = False,
    ) -> ChunkTranscript:
        """`previous`: the text before this audio (the file's preceding chunk, the stream's last
        final), given to the decoder as context. `translate`: English text for speech in `language`.
        `live`: an utterance of a live stream, decoded in the window policy's `live_s`. Audio without
        speech gives no words (guards.py: digital silence is not decoded at all)."""
        if is_silent(audio):
            return ChunkTranscript("", [], aligned=align)
        prompt_ids, completion, no_speech_prob = await self._decode(
            self._windowed(audio, live), language, self._previous_ids(previous), translate
        )
        # iter(): vLLM types FlatLogprobs as a sequence of `dict | None` (a prompt's first position has no
        # logprobs), but a completion's positions all have one, as its __iter__ declares.
        steps = iter(completion.logprobs or [])
        decoded = [(token_id, step[token_id]) for token_id, step in zip(completion.token_ids, steps) if token_id in step]
        if no_speech(no_speech_prob, [lp.logprob for _, lp in decoded]):
            return ChunkTranscript("", [], aligned=align)
        text = [(token_id, lp) for token_id, lp in decoded if token_id < self.vocab.eot]
        repeat = trailing_repeat([token_id for token_id, _ in text], [lp.decoded_token or "" for _, lp in text])
        if repeat:
            text = text[:-repeat]
        ids = [token_id for token_id, _ in text]
        times: list[tuple[float, float]] | None = None
        if align:
            loop = asyncio.get_running_loop()
            times = await loop.run_in_executor(self._align_pool, self.aligner.align, audio, prompt_ids, ids, self.vocab.eot)
        tokens = [
            Token(lp.decoded_token or "", lp.logprob, *(times[k] if times else (None, None))) for k, (_, lp) in enumerate(text)
        ]
        return ChunkTranscript(self.tokenizer.decode(ids) if repeat else completion.text, tokens, aligned=times is not None)

    def _windowed(self, audio: np.ndarray, live: bool) -> np.ndarray:
        """A live utterance with trailing silence up to the policy's `live_pad_s`, so that vLLM's
        processor gives it the `live_s` window: the features are the same as that window's own
        padding would make them (zeros, before the log-mel), and its words are too."""
        pad = round(self.args.window.live_pad_s() * SAMPLE_RATE) if live and self.args.window else 0
        return np.pad(audio, (0, pad - audio.size)) if audio.size < pad else audio

    async def _decode(
        self, audio: np.ndarray, language: str | None, previous: list[int], translate: bool
    ) -> tuple[list[int], CompletionOutput, float]:
        """Greedy with the previous text, then without it, then at rising temperatures: Whisper's guard
        against repetition loops ("Hello. Hello. Hello." over a whole window of a phone call), where
        text that compresses too well is decoded again. A loop can come from the previous text, so
        the fallbacks drop it (as openai/whisper does). Returns the prompt used, its completion and
        the model's no-speech probability (0 for a prompt with previous text: `_params`)."""
        plain = self.vocab.prompt(language, translate=translate)
        attempts = [(self.vocab.prompt(language, previous, translate), self.sampling_in_context)] if previous else []
        attempts += [(plain, self.sampling), *((plain, self._params(t)) for t in FALLBACK_TEMPERATURES)]
        tried = []
        for prompt_ids, params in attempts:
            output = await self._generate(self._prompt(audio, prompt_ids), params)
            tried.append((prompt_ids, output.outputs[0], self._no_speech_prob(prompt_ids, output)))
            if compression_ratio(tried[-1][1].text) <= MAX_COMPRESSION_RATIO:
                return tried[-1]
        return tried[0]

    def _no_speech_prob(self, prompt_ids: list[int], output: RequestOutput) -> float:
        """<|nospeech|>'s probability where it would follow <|startoftranscript|>. Only the likeliest
        token's log-probability is asked for: where <|nospeech|> is not that, it is under 0.5, and so
        under the rule's threshold anyway."""
        if not output.prompt_logprobs or self.vocab.no_speech is None:
            return 0.0
        step = output.prompt_logprobs[prompt_ids.index(self.vocab.sot) + 1]
        logprob = step.get(self.vocab.no_speech) if step else None
        return math.exp(logprob.logprob) if logprob is not None else 0.0

    def _previous_ids(self, text: str) -> list[int]:
        """The text's token ids as Whisper's prompt takes them (a leading space, as mid-sentence)."""
        return self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids if text.strip() else []

    async def diarize(self, audio: np.ndarray, num_speakers: int | None = None) -> list[Turn]:
        """Speaker turns of a whole channel (diarize.py); shares the alignment thread, as both are PyTorch."""
        return await asyncio.get_running_loop().run_in_executor(self._align_pool, self.diarizer, audio, num_speakers)

    async def check_health(self) -> None:
        """Serve's replica health check: a dead engine makes Serve replace the replica."""
        await self.engine.check_health()

    def shutdown(self) -> None:
        """Stop vLLM's engine processes (idempotent). Serve calls `__del__` when it stops a replica."""
        # Deleted rather than set to None: while `engine` exists it is a running AsyncLLM. getattr: a
        # failed __init__ may not have set it.
        engine = getattr(self, "engine", None)
        if engine is not None:
            del self.engine
            engine.shutdown()

    def __del__(self) -> None:
        self.shutdown()
