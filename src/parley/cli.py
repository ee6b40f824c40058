"""``parley`` command line.  Its options are generated from :class:`parley.settings.Settings`,
so every option is also a ``PARLEY_<NAME>`` environment variable, from the same model."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from parley.settings import Settings


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
    return parser


def serve(settings: Settings) -> None:
    import uvicorn

    from parley.http.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("parley")
    upstreams = ", ".join(f"{u.name} ({u.url or 'embedded'})" for u in settings.upstreams())
    log.info("upstreams: %s; store: %s", upstreams, settings.database_url().split("@")[-1])
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
