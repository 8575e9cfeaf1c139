"""Kamailio's dispatcher hash and hash keys."""

from __future__ import annotations

import ctypes

import pytest

from sipdispatch.dispatcher import ds_get_hash, hash_slot
from sipdispatch.dispatcher.hashing import (
    digest_user,
    hash_authusername,
    hash_callid,
    hash_uri,
    hash_value,
    uri_hash_keys,
)


def reference_hash(*parts: bytes) -> int:
    """A literal transcription of Kamailio's ds_get_hash using C types (char
    signed as on x86-64), written independently of the module under test."""
    h = ctypes.c_uint32(0)
    for s in parts:
        chars = [ctypes.c_int8(b).value for b in s]
        p = 0
        while p + 4 <= len(chars):
            v = ctypes.c_uint32(
                (chars[p] << 24) + (chars[p + 1] << 16) + (chars[p + 2] << 8) + chars[p + 3]
            )
            h = ctypes.c_uint32(h.value + (v.value ^ (v.value >> 3)))
            p += 4
        v = ctypes.c_uint32(0)
        while p < len(chars):
            v = ctypes.c_uint32((v.value << 8) + chars[p])
            p += 1
        h = ctypes.c_uint32(h.value + (v.value ^ (v.value >> 3)))
    x = h.value
    x = ctypes.c_uint32(x + (x >> 11) + (x >> 13) + (x >> 23)).value
    return x or 1


def test_rpc_hash_bob_server_com_is_3883463682_slot_2() -> None:
    # Kamailio: `kamctl rpc dispatcher.hash 4 bob server.com`
    assert hash_slot(4, "bob", "server.com") == (3883463682, 2)


def test_rpc_hash_with_zero_slots_gives_slot_0() -> None:
    hashid, slot = hash_slot(0, "alice", "server.com")
    assert slot == 0
    assert hashid == reference_hash(b"alice", b"server.com")


@pytest.mark.parametrize(
    "parts",
    [
        (b"",),
        (b"a",),
        (b"abcd",),
        (b"abcde",),
        (b"a84b4c76e66710@pc33.atlanta.com",),
        (b"alice", b"atlanta.com:5070"),
        ("j\u00f6rg".encode(), "m\u00fcnchen.example".encode()),
        (b"\xff\xfe\x80\x7f\x00",),
    ],
)
def test_hash_matches_c_semantics(parts: tuple[bytes, ...]) -> None:
    assert ds_get_hash(*parts) == reference_hash(*parts)


def test_empty_second_value_is_the_same_as_none() -> None:
    assert ds_get_hash("bob", "") == ds_get_hash("bob") == ds_get_hash("bob", None)


def test_hash_is_never_zero() -> None:
    assert ds_get_hash(None, None) == 1
    assert ds_get_hash("") == 1


def test_callid_hash_trims_whitespace() -> None:
    assert hash_callid("  abc@host \r\n") == ds_get_hash("abc@host")


@pytest.mark.parametrize(
    ("uri", "keys"),
    [
        ("sip:bob@server.com", ("bob", "server.com")),
        ("sip:bob@server.com:5060", ("bob", "server.com")),
        ("sip:bob@server.com:5070;transport=tcp", ("bob", "server.com:5070")),
        ("sips:bob@server.com:5061", ("bob", "server.com")),
        ("sips:bob@server.com:5060", ("bob", "server.com:5060")),
        ("sip:server.com", (None, "server.com")),
        ("sip:bob:secret@[2001:db8::1]:5080", ("bob", "[2001:db8::1]:5080")),
        ("tel:+4930123;phone-context=x", ("+4930123", "")),
    ],
)
def test_uri_hash_keys_as_kamailio(uri: str, keys: tuple[str | None, str]) -> None:
    assert uri_hash_keys(uri) == keys


def test_uri_hash_of_bob_at_server_com_is_the_rpc_value() -> None:
    assert hash_uri("sip:bob@server.com") == 3883463682
    assert hash_uri("sip:bob@server.com:5060") == 3883463682


def test_hash_user_only_ignores_host_and_port() -> None:
    assert hash_uri("sip:bob@a.example.com", user_only=True) == ds_get_hash("bob")
    assert hash_uri("sip:bob@b.example.com:5070", user_only=True) == ds_get_hash("bob")


def test_unparsable_uri_gives_no_hash() -> None:
    assert hash_uri("not a uri") is None


def test_digest_username_user_part_as_kamailio() -> None:
    assert digest_user("alice") == "alice"
    assert digest_user("alice@example.com") == "alice"
    assert digest_user("sip:alice@example.com") == "alice"
    assert hash_authusername("alice@example.com") == ds_get_hash("alice")
    assert hash_authusername(None) is None
    assert hash_authusername("@example.com") is None


def test_configured_value_hash_trims_and_refuses_empty() -> None:
    assert hash_value(" x ") == ds_get_hash("x")
    assert hash_value("  ") is None
    assert hash_value(None) is None
