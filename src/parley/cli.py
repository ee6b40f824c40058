"""``parley`` command line.  Its options are generated from :class:`parley.settings.Settings`,
so every option is also a ``PARLEY_<NAME>`` environment variable, from the same model."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any

from parley.logs import configure_logging
from parley.settings import Settings

SETTINGS_ENV = "PARLEY_SERVE_SETTINGS"  # settings handed to --workers processes


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description or ''} [env PARLEY_{name.upper()}]",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags override the environment; the environment overrides defaults."""
    given: dict[str, Any] = {
        name: value for name in Settings.model_fields if (value := getattr(args, name, None)) is not None
    }
    return Settings(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="The OpenAI Responses API over any model.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the Responses API server.")
    _add_settings_options(serve)
    verify = commands.add_parser("verify", help="Run the conformance scenarios against a Responses endpoint.")
    verify.add_argument("--base-url", required=True, help="The endpoint's base URL, ending in /v1.")
    verify.add_argument("--model", required=True)
    verify.add_argument("--api-key", default="parley-verify")
    verify.add_argument("--only", default=None, help="Comma-separated scenario names.")
    verify.add_argument("--json", default=None, help="Write the results to this JSON file.")
    verify.add_argument("--search-port", type=int, default=None,
                        help="Start a search server on this loopback port (give the endpoint "
                             "--web-search searxng:http://127.0.0.1:PORT).")
    verify.add_argument("--web-search", action="store_true",
                        help="The endpoint has a web search provider of its own.")
    scripted = commands.add_parser("scripted-backend",
                                   help="Run the scripted Chat Completions backend (the conformance model).")
    scripted.add_argument("--host", default="127.0.0.1")
    scripted.add_argument("--port", type=int, default=8399)
    scripted.add_argument("--responder", choices=["conformance", "echo"], default="conformance")
    return parser


def verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from parley.verify.runner import run_verify, table

    logging.getLogger("httpx").setLevel(logging.WARNING)
    outcomes = run_verify(args.base_url, args.model, args.api_key,
                          only=args.only.split(",") if args.only else None,
                          json_path=Path(args.json) if args.json else None,
                          search_port=args.search_port, web_search=args.web_search)
    print(table(outcomes))
    return 1 if any(o.status == "fail" for o in outcomes) else 0


def scripted_backend(args: argparse.Namespace) -> int:
    import threading

    from parley.testing import ScriptedBackend, echo_responder
    from parley.testing.conformance import conformance_responder

    responder = conformance_responder if args.responder == "conformance" else echo_responder
    with ScriptedBackend(responder, host=args.host, port=args.port) as backend:
        print(f"scripted backend on {backend.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def serve(settings: Settings) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from parley.http.app import create_app
    from parley.metrics import MULTIPROCESS_ENV

    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("parley")
    upstreams = ", ".join(f"{u.name} ({u.url or 'embedded'})" for u in settings.upstreams())
    log.info("upstreams: %s; store: %s", upstreams, settings.database_url().split("@")[-1])
    options: dict[str, Any] = dict(host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                                   access_log=False, log_config=None, timeout_keep_alive=settings.keep_alive_s,
                                   http="parley.http.protocol:HeaderTimeoutProtocol")
    from parley.backends.embedded import EmbeddedUnavailable
    from parley.backends.router import Router, UnknownBackendType
    from parley.auth import ApiKeys
    from parley.runtime import PluginError, load_plugins

    try:
        load_plugins(settings.plugins)  # a plugin that cannot load, or a missing extra, is said now, not in each worker
        router = Router.from_settings(settings)
        ApiKeys.from_settings(settings.api_keys, settings.api_keys_file, settings.admin_keys)  # malformed: said now
        guard = settings.moderation_guard_model
        if guard and not settings.moderation_upstream and not router.serves(guard):
            raise ValueError(f"--moderation-guard-model {guard}: no upstream serves this model")
        if settings.retrieval_model and not router.serves(settings.retrieval_model):
            raise ValueError(f"--retrieval-model {settings.retrieval_model}: no upstream serves this model")
    except (EmbeddedUnavailable, PluginError, UnknownBackendType, ValueError, OSError) as exc:
        print(f"parley: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.workers == 1:
        config = uvicorn.Config(create_app(settings, router=router, server=True), **options)
        config.header_timeout_s = settings.header_timeout_s  # type: ignore[attr-defined]
        server = uvicorn.Server(config)
        server.run()
        if not server.started:  # the app did not start (its lifespan failed): say so in the exit status
            sys.exit(3)
        return
    # Each worker process builds its own app from the same settings, passed in the environment, and
    # writes its metrics to one shared directory so that any worker's /metrics covers all of them.
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    given = os.environ.get(MULTIPROCESS_ENV)
    directory = given or tempfile.mkdtemp(prefix="parley-metrics-")
    for stale in pathlib.Path(directory).glob("*.db"):  # values of an earlier run
        stale.unlink()
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        config = uvicorn.Config("parley.cli:app_from_environment", factory=True, workers=settings.workers,
                                **options)
        config.header_timeout_s = settings.header_timeout_s  # type: ignore[attr-defined]
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


def app_from_environment() -> Any:
    """The app of one ``--workers`` process."""
    from parley.http.app import create_app

    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, server=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        return verify(args)
    if args.command == "scripted-backend":
        return scripted_backend(args)
    try:
        settings = settings_from_args(args)
    except Exception as exc:  # pydantic's message names the bad option
        print(f"parley: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
