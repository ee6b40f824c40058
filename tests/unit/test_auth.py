"""API key parsing and lookup."""

from __future__ import annotations

import pytest

from parley.auth import ApiKeys
from parley.errors import AuthenticationFailed


def test_inline_and_file_keys(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\nsk-c  carol\nsk-d=dave  # trailing comment\n\n")
    keys = ApiKeys.from_settings("sk-a=alice, sk-b=bob", keys_file)
    assert [keys.tenant(f"Bearer sk-{k}") for k in "abcd"] == ["alice", "bob", "carol", "dave"]
    assert keys.tenant("bearer sk-a") == "alice"


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic sk-a", "Bearer sk-z"])
def test_missing_or_unknown_keys_are_401(header) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        ApiKeys.from_settings("sk-a=alice", None).tenant(header)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"


def test_no_keys_means_local_mode() -> None:
    keys = ApiKeys.from_settings(None, None)
    assert not keys.enabled and keys.tenant(None) == ""


def test_an_entry_without_a_tenant_is_refused() -> None:
    with pytest.raises(ValueError):
        ApiKeys.from_settings("sk-a", None)
