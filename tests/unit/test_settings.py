"""One typed settings model: CLI flags and PARLEY_* variables, and the upstream list."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.cli import build_parser, settings_from_args
from parley.settings import EMBEDDED_MODEL_ID, Settings


def test_every_option_is_an_environment_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PARLEY_UPSTREAM", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("PARLEY_UPSTREAM_API_KEY", "sk-x-0000")
    monkeypatch.setenv("PARLEY_DB", "sqlite:///x.db")
    monkeypatch.setenv("PARLEY_PORT", "9000")
    monkeypatch.setenv("PARLEY_HOST", "0.0.0.0")
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    settings = settings_from_args(build_parser().parse_args(["serve"]))
    assert (settings.upstream, settings.upstream_api_key, settings.db) == ("http://127.0.0.1:9/v1/", "sk-x-0000", "sqlite:///x.db")
    assert (settings.port, settings.host, settings.data_dir) == (9000, "0.0.0.0", tmp_path)
    [default] = settings.upstreams()
    assert (default.url, default.api_key, default.models) == ("http://127.0.0.1:9/v1", "sk-x-0000", ["*"])


def test_flags_override_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("PARLEY_PORT", "9000")
    args = build_parser().parse_args(["serve", "--port", "9100", "--upstream", "http://h/v1", "--db", "sqlite:///y"])
    settings = settings_from_args(args)
    assert (settings.port, settings.upstream, settings.db) == (9100, "http://h/v1", "sqlite:///y")


def test_flag_names_are_the_documented_ones() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for flag in ("--host", "--port", "--upstream", "--upstream-api-key", "--db", "--config"):
        assert flag in help_text


def test_defaults_embedded_model_and_sqlite_in_the_data_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    for name in ("PARLEY_UPSTREAM", "PARLEY_DB", "PARLEY_DATA_DIR", "PARLEY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url() == f"sqlite:///{tmp_path / 'parley' / 'parley.db'}"
    [embedded] = settings.upstreams()
    assert embedded.type == "embedded" and embedded.models == [EMBEDDED_MODEL_ID, "*"]


def test_config_file_declares_upstreams(tmp_path: Path) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text("upstreams:\n  - name: a\n    url: http://a/v1\n    models: [m1, m2]\n"
                      "  - name: b\n    url: http://b/v1\n    api_key: k\n    models: [m3]\n")
    upstreams = Settings(config=config).upstreams()
    assert [(u.name, u.models) for u in upstreams] == [("a", ["m1", "m2"]), ("b", ["m3"]),
                                                       ("embedded", [EMBEDDED_MODEL_ID])]


def test_bad_config_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text("upstreams:\n  - url: http://a/v1\n")
    with pytest.raises(ValueError):
        Settings(config=config).upstreams()


def test_bad_web_search_spec_stops_the_server_with_a_reason() -> None:
    from parley.http.app import create_app

    for spec, reason in [("bing:http://x", "unknown web search provider"), ("searxng", "needs a URL"),
                         ("tavily", "tavily needs")]:
        with pytest.raises(ValueError, match=reason):
            create_app(Settings(web_search=spec, upstream="http://127.0.0.1:9/v1"))
