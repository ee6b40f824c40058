"""One runtime: every collaborator of a Parley server, built from :class:`~parley.settings.Settings` in one place.

``parley serve``, each ``--workers`` process, the in-process ``parley.Client`` and the tests all get their
server from :func:`parley.http.app.create_app`, which holds one :class:`Runtime`: the API keys, metrics,
model router, search provider, address policy, store and engine, and the background work that keeps the
store honest (heartbeat and recovery).  Nothing else builds these.
"""

from __future__ import annotations

import asyncio
import re
import time
import importlib
import logging
from collections.abc import Coroutine
from typing import Any

from parley.auth import ApiKeys
from parley.containers.service import Containers
from parley.containers.skills import SqlSkills
from parley.containers.store import SqlContainers
from parley.background import Background, make_background
from parley.backends.router import Router
from parley.engine.engine import Engine
from parley.errors import StoreUnavailable
from parley.extract import Limits
from parley.files import FileReader
from parley.metrics import Metrics
from parley.netpolicy import AddressPolicy
from parley.reasoning import ReasoningCipher
from parley.settings import Settings
from parley.retrieval.embeddings import Embedders
from parley.retrieval.model_ranking import ModelRanking
from parley.retrieval.service import Retrieval
from parley.sandbox.base import Limits as SandboxLimits
from parley.store.conversations import SqlConversations
from parley.store.files import SqlFiles
from parley.store.sql import TEXT_BATCH, SqlStore, open_store
from parley.tools.base import ToolEnv
from parley.moderation import Moderator
from parley.moderation_guard import GuardModerator
from parley.prompts.store import SqlPrompts
from parley.prompts.templates import variables_of
from parley.tools.images import ImagesEndpoint
from parley.tools.web_cache import SqlWebCache
from parley.tools.web_search import make_provider
from parley.workers import WorkerPool

log = logging.getLogger("parley.runtime")


class PluginError(Exception):
    pass


_LOADED: set[str] = set()


def load_plugins(modules: str | None) -> None:
    """Import each ``--plugins`` module and call its ``register()``, once per process: it registers the tool
    kinds (:data:`parley.tools.registry.REGISTRY`) or backend types (:func:`parley.backends.router.register_backend`)
    it adds."""
    for name in filter(None, (part.strip() for part in (modules or "").split(","))):
        if name in _LOADED:
            continue
        try:
            register = getattr(importlib.import_module(name), "register")
            register()
        except Exception as exc:
            raise PluginError(f"cannot load plugin module '{name}' (it must define register()): {exc!r}") from exc
        _LOADED.add(name)


class Runtime:
    """What a server runs with.  Built from settings (no I/O); :meth:`start` opens the store and the backends,
    :meth:`close` lets running responses finish within ``shutdown_grace_s`` and releases everything."""

    def __init__(self, settings: Settings, router: Router | None = None) -> None:
        self.settings = settings
        load_plugins(settings.plugins)
        self.keys = ApiKeys.from_settings(settings.api_keys, settings.api_keys_file, settings.admin_keys)
        self.metrics = Metrics()
        self.router = router or Router.from_settings(settings)
        search = make_provider(
            settings.web_search, tavily_api_key=settings.tavily_api_key, brave_api_key=settings.brave_api_key,
            timeout=settings.tool_timeout) if settings.web_search else None
        self.policy = AddressPolicy(enforce=self.keys.enabled, allow=settings.outbound_allow)
        self.tools = ToolEnv(self.policy, settings.tool_timeout, search, settings.mcp_require_approval)
        self.tools.computer_confirm = re.compile(settings.computer_confirm) if settings.computer_confirm else None
        self.moderator: Moderator | GuardModerator | None = None
        if settings.moderation_upstream:
            self.moderator = Moderator(settings.moderation_upstream, settings.moderation_api_key,
                                       settings.upstream_timeout_s)
        elif settings.moderation_guard_model:
            self.moderator = GuardModerator(self.router, settings.moderation_guard_model)
        if settings.images_upstream:  # image generation takes minutes where a tool call takes seconds
            self.tools.images = ImagesEndpoint(settings.images_upstream, settings.images_api_key,
                                               settings.images_model, settings.upstream_timeout_s)
        # Two lanes of file workers: a tenant's large ingestion never makes another's input_file wait.
        bounds = (settings.file_worker_memory_mb << 20, settings.file_worker_cpu_s)
        self.workers = WorkerPool(settings.file_workers, *bounds, preload=("parley.retrieval.warm",))
        self.ingest_workers = WorkerPool(settings.ingest_concurrency, *bounds)
        self.file_limits = Limits(settings.max_file_tokens)
        self.ready = False
        self.prompts: SqlPrompts | None = None
        self._engine: Engine | None = None
        self._files: SqlFiles | None = None
        self._retrieval: Retrieval | None = None
        self._conversations: SqlConversations | None = None
        self._containers: Containers | None = None
        self._background: Background | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # responses running on after their client left
        self._watchdog: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._indexer: asyncio.Task[None] | None = None
        if not self.keys.enabled:
            log.warning("no API keys configured: serving without authentication (local mode)")

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the runtime has not started"
        return self._engine

    @property
    def files(self) -> SqlFiles:
        assert self._files is not None, "the runtime has not started"
        return self._files

    @property
    def conversations(self) -> SqlConversations:
        assert self._conversations is not None, "the runtime has not started"
        return self._conversations

    @property
    def background(self) -> Background:
        assert self._background is not None, "the runtime has not started"
        return self._background

    @property
    def retrieval(self) -> Retrieval:
        assert self._retrieval is not None, "the runtime has not started"
        return self._retrieval

    @property
    def containers(self) -> Containers:
        assert self._containers is not None, "the runtime has not started"
        return self._containers

    @property
    def store(self) -> SqlStore:
        return self.engine.store  # type: ignore[return-value]

    async def start(self) -> None:
        settings = self.settings
        store = await open_store(settings.database_url(), settings.store_timeout_s)
        self._files = SqlFiles(store, settings.files_dir)
        self._conversations = SqlConversations(store)
        await self.router.start()
        self._engine = Engine(
            store, self.router, self.tools, max_tool_iterations=settings.max_tool_iterations, metrics=self.metrics,
            cipher=ReasoningCipher.from_settings(settings.reasoning_key, settings.data_dir),
            store_retry_s=settings.store_retry_s, files=FileReader(
                self.policy, settings.max_file_bytes, settings.tool_timeout, self._files, self.workers,
                self.file_limits),
            conversations=self._conversations, moderator=self.moderator)
        self.tools.cipher = self.engine.cipher  # (seals the fingerprints of programs)
        await store.heartbeat(self.engine.recorder.instance_id)  # registered before it serves
        self._retrieval = Retrieval(
            store, self._files, Embedders(settings.embedding_upstream, settings.embedding_api_key,
                                          settings.upstream_timeout_s), self.ingest_workers,
            instance=self.engine.recorder.instance_id, stale_s=settings.instance_stale_s,
            limits=self.file_limits, concurrency=settings.ingest_concurrency,
            ranking=ModelRanking(self.router, settings.retrieval_model, settings.rerank_candidates)
            if settings.retrieval_model else None, held_vectors_bytes=settings.vector_cache_mb * 1024 * 1024,
            held_postings_bytes=settings.keyword_cache_mb * 1024 * 1024, bm25_index=settings.bm25_index)
        await self._retrieval.start()
        self.tools.retrieval = self._retrieval
        self._containers = self._make_containers(store)
        await self._containers.start()
        self.tools.containers = self._containers
        self.tools.web_cache = self._web_cache = SqlWebCache(store)
        self.tools.files = self._files
        self.prompts = SqlPrompts(store, variables_of)
        self._background = make_background(self.engine, store, settings)
        self._background.start()
        self._watchdog = asyncio.create_task(self._recover_abandoned())
        self._sweeper = asyncio.create_task(self._sweep()) if settings.retention_days > 0 else None
        self._indexer = None if store.is_postgres else asyncio.create_task(self._index_text())
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        if self._tasks:  # let responses whose clients left finish, within a bound
            await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
        if self._background is not None:
            await self._background.aclose()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._indexer is not None:
            self._indexer.cancel()
        if self._retrieval is not None:
            await self._retrieval.aclose()  # before signing off: its work is handed back
        if self._containers is not None:
            await self._containers.aclose()
        try:
            await self.engine.recorder.sign_off()
        except StoreUnavailable:
            log.warning("could not sign this instance off: the database is unavailable")
        await self.router.aclose()
        if self.tools.images is not None:
            await self.tools.images.aclose()
        if self.moderator is not None:
            await self.moderator.aclose()
        await self.store.close()
        self.metrics.close()

    def _make_containers(self, store: SqlStore) -> Containers:
        """Containers on the sandbox ``--sandbox`` names (see :mod:`parley.sandbox`)."""
        from parley.containers.relay import Relay
        from parley.sandbox.bwrap import BwrapSandbox

        settings = self.settings
        limits = SandboxLimits(processes=settings.container_processes, disk_bytes=settings.container_disk_mb << 20,
                               file_bytes=settings.max_file_bytes,
                               call_timeout_s=settings.code_timeout_s)
        sandbox, why, relay = None, "it was started with --sandbox none", None
        directory = settings.containers_dir or settings.data_dir / "containers"
        if settings.sandbox == "kernel_gateway":
            from parley.sandbox.gateway import KernelGatewaySandbox

            sandbox = KernelGatewaySandbox(settings.kernel_gateway_url or "", settings.kernel_gateway_token,
                                           settings.kernel_gateway_workdir, settings.kernel_gateway_kernel)
            why = sandbox.unavailable()
        elif settings.sandbox != "none":
            bwrap = BwrapSandbox(directory)
            why = bwrap.unavailable()
            if why is None:
                sandbox, relay = bwrap, Relay(directory, self.engine.recorder.instance_id)
            elif settings.sandbox == "bwrap":
                raise RuntimeError(f"--sandbox bwrap: {why}")
            else:
                log.warning("code_interpreter and the hosted shell are off: %s", why)
        skills = SqlSkills(store, self.files, directory / ".skills")
        return Containers(SqlContainers(store), self.files, sandbox, self.engine.recorder.instance_id,
                          limits=limits, max_memory=settings.container_max_memory, unavailable=why, relay=relay,
                          skills=skills)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (a streamed response) on its own, so that it finishes even if its client leaves;
        :meth:`close` waits for it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweep(self) -> None:
        """Retention: every ``retention_sweep_s``, delete stored responses older than ``retention_days``,
        conversations unused for as long, and the web search results kept for as long.  Any instance may sweep; the deletes are idempotent."""
        while True:
            before = time.time() - self.settings.retention_days * 86400
            try:
                responses = await self.store.sweep(before)
                conversations = await self.conversations.sweep(before)
                pages = await self._web_cache.sweep(before)
                if responses or conversations or pages:
                    log.info("retention: deleted %d responses, %d conversations and %d kept web search results",
                             responses, conversations, pages)
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("retention sweep failed; retrying")
            await asyncio.sleep(self.settings.retention_sweep_s)

    async def _index_text(self) -> None:
        """Keep SQLite's word index of ended responses' text (the console's text filter) up to date: soon
        after responses end, a batch at a time, and every few seconds for any ended elsewhere (another process
        on the same file, crash recovery)."""
        store = self.store
        while True:
            try:
                await asyncio.wait_for(store.text_pending.wait(), timeout=5.0)
                await asyncio.sleep(0.05)  # those that end together, in one transaction
            except TimeoutError:
                pass
            store.text_pending.clear()
            try:
                while await store.index_text() == TEXT_BATCH:
                    pass
            except StoreUnavailable:
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("indexing responses' text failed; retrying")
                await asyncio.sleep(1.0)

    async def _recover_abandoned(self) -> None:
        """Beat this instance's heart and fail the responses of instances that stopped beating (``kill -9``,
        a crash, a lost machine) and this instance's own whose final write never landed: at start-up and then
        every third of ``instance_stale_s``, or every second while the database is unreachable (so the store
        is seen back soon)."""
        stale_s = self.settings.instance_stale_s
        while True:
            try:
                failed = await self.engine.recorder.recover(stale_s)
                if failed:
                    log.warning("marked %d abandoned in_progress responses as failed", len(failed))
            except StoreUnavailable:
                pass  # the store logs when it becomes unavailable
            except Exception:
                log.exception("crash recovery pass failed; retrying")
            await asyncio.sleep(stale_s / 3 if self.store.available else min(1.0, stale_s / 3))
