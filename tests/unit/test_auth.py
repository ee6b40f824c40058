"""API key parsing and lookup."""

from __future__ import annotations

import pytest

from parley.auth import ApiKeys
from parley.errors import AuthenticationFailed


def test_inline_and_file_keys(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\nsk-c-0000  carol\nsk-d-0000=dave  # trailing comment\n\n")
    keys = ApiKeys.from_settings("sk-a-0000=alice, sk-b-0000=bob", keys_file)
    assert [keys.tenant(f"Bearer sk-{k}-0000") for k in "abcd"] == ["alice", "bob", "carol", "dave"]
    assert keys.tenant("bearer sk-a-0000") == "alice"


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic sk-a-0000", "Bearer sk-z-0000"])
def test_missing_or_unknown_keys_are_401(header) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        ApiKeys.from_settings("sk-a-0000=alice", None).tenant(header)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"


def test_no_keys_means_local_mode() -> None:
    keys = ApiKeys.from_settings(None, None)
    assert not keys.enabled and keys.tenant(None) == ""


def test_an_entry_without_a_tenant_is_refused() -> None:
    with pytest.raises(ValueError):
        ApiKeys.from_settings("sk-a-0000", None)


def test_admin_keys_are_api_keys_of_their_tenant_and_only_they_are_admins() -> None:
    keys = ApiKeys.from_settings("sk-a-0000=alice", None, "sk-root-0000, sk-ops-0000=ops")
    assert keys.tenant("Bearer sk-root-0000") == "admin" and keys.tenant("Bearer sk-ops-0000") == "ops"
    assert keys.is_admin("sk-root-0000") and keys.is_admin("sk-ops-0000")
    assert not keys.is_admin("sk-a-0000") and not keys.is_admin(None) and not keys.is_admin("sk-nobody")
    assert ApiKeys.from_settings(None, None, "sk-root-0000").enabled  # an admin key alone turns authentication on
    with pytest.raises(ValueError, match="admin key entry needs a key"):
        ApiKeys.from_settings(None, None, "sk-root-0000, =ops")


def test_keys_shorter_than_eight_characters_are_refused() -> None:
    for inline, admin in (("sk-ab=alice", None), (None, "sk-root")):
        with pytest.raises(ValueError, match="at least 8 characters"):
            ApiKeys.from_settings(inline, None, admin)


def test_an_address_that_sends_too_many_wrong_keys_is_refused_for_the_minute() -> None:
    from parley.auth import FailedKeys
    from parley.errors import TooManyFailures

    keys = ApiKeys.from_settings("sk-a-0000=alice", None)
    for _ in range(FailedKeys.LIMIT):
        with pytest.raises(AuthenticationFailed):
            keys.caller("Bearer sk-guess-000", "10.0.0.9")
    with pytest.raises(TooManyFailures) as info:
        keys.caller("Bearer sk-a-0000", "10.0.0.9")  # even the right key, until the minute ends
    assert info.value.status_code == 429 and int(dict(info.value.header_pairs())[b"retry-after"]) > 0
    assert keys.caller("Bearer sk-a-0000", "10.0.0.10").tenant == "alice"  # other addresses are not affected
    assert keys.caller("Bearer sk-a-0000").tenant == "alice"


def test_a_key_stands_for_itself_by_its_digest_only_while_configured() -> None:
    keys = ApiKeys.from_settings("sk-a-0000=alice", None, "sk-root-0000")
    digest = keys.digest("sk-a-0000")
    assert digest is not None and "sk-a-0000" not in digest
    assert keys.by_digest(digest) == ("alice", False)
    assert keys.by_digest(keys.digest("sk-root-0000")) == ("admin", True)
    assert keys.digest("sk-nobody") is None and keys.by_digest("zz") is None
    assert ApiKeys.from_settings("sk-b-0000=bob", None).by_digest(digest) is None  # removed: its sessions end
