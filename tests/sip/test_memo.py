"""Memos of what peers send stay bounded in entries and in key length."""

from __future__ import annotations

from sipdispatch.dispatcher import hashing
from sipdispatch.sip import headers, message
from sipdispatch.sip.memo import MEMO_ENTRIES, MEMO_KEY_LENGTH, remember
from sipdispatch.sip.message import NEW_NAMES_PER_MESSAGE, parse_datagram


def request(extra: list[str], via_host: str = "192.0.2.4") -> bytes:
    lines = [
        "OPTIONS sip:x@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host}:5060;branch=z9hG4bK-1",
        "From: <sip:a@h>;tag=1",
        "To: <sip:x@h>",
        "Call-ID: memo",
        "CSeq: 1 OPTIONS",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_full_memo_is_emptied_rather_than_grown() -> None:
    memo: dict[str, int] = {}
    for i in range(MEMO_ENTRIES + 10):
        remember(memo, f"k{i}", i)
    assert len(memo) == 10  # emptied at the limit, then refilled
    assert memo[f"k{MEMO_ENTRIES + 9}"] == MEMO_ENTRIES + 9


def test_a_memo_keeps_no_key_longer_than_the_limit() -> None:
    memo: dict[str, int] = {}
    remember(memo, "x" * MEMO_KEY_LENGTH, 1)
    remember(memo, "x" * (MEMO_KEY_LENGTH + 1), 2)
    assert list(memo.values()) == [1]


def test_long_header_names_and_via_hosts_from_peers_are_not_kept() -> None:
    long_name = "X-" + "n" * 20000
    long_host = "h" * 20000 + ".example.com"
    for i in range(3):
        msg = parse_datagram(request([f"{long_name}{i}: v"], via_host=f"{long_host}{i}"))
        assert msg.top_via.host == f"{long_host}{i}"
    assert all(len(k) <= MEMO_KEY_LENGTH for k in message._name_cache)
    assert all(len(k) <= MEMO_KEY_LENGTH for k in headers._sent_by_cache)


def test_one_message_teaches_the_name_memo_a_few_names_only() -> None:
    message._name_cache.clear()
    names = [f"X-Only-Once-{i}" for i in range(500)]
    msg = parse_datagram(request([f"{name}: v" for name in names]))
    assert [h[1] for h in msg.headers if h[1].startswith("X-Only-Once-")] == names
    assert len(message._name_cache) == NEW_NAMES_PER_MESSAGE  # it was empty before


def test_uri_hash_memo_is_bounded_against_peer_chosen_uris() -> None:
    for i in range(MEMO_ENTRIES + 100):
        assert hashing.hash_uri(f"sip:u{i}@example.com") == hashing.ds_get_hash(
            f"u{i}", "example.com"
        )
    hashing.hash_uri("sip:" + "u" * 10000 + "@example.com")
    memo = hashing._uri_hashes[False]
    assert len(memo) <= MEMO_ENTRIES
    assert all(len(k) <= MEMO_KEY_LENGTH for k in memo)
