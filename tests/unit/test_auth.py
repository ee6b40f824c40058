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


def test_admin_keys_are_api_keys_of_their_tenant_and_only_they_are_admins() -> None:
    keys = ApiKeys.from_settings("sk-a=alice", None, "sk-root, sk-ops=ops")
    assert keys.tenant("Bearer sk-root") == "admin" and keys.tenant("Bearer sk-ops") == "ops"
    assert keys.is_admin("sk-root") and keys.is_admin("sk-ops")
    assert not keys.is_admin("sk-a") and not keys.is_admin(None) and not keys.is_admin("sk-nobody")
    assert ApiKeys.from_settings(None, None, "sk-root").enabled  # an admin key alone turns authentication on
    with pytest.raises(ValueError, match="admin key entry needs a key"):
        ApiKeys.from_settings(None, None, "sk-root, =ops")
