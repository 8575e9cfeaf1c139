"""Hash algorithms: 0 Call-ID, 1 From URI, 2 To URI, 3 R-URI, 5 auth username,
7 configured header value.

The hash (:mod:`sipdispatch.dispatcher.hashing`) modulo the set size picks the
destination; an unusable one is stepped over to the next usable, so the same
key keeps going to the same destination while the set does not change.
"""

from __future__ import annotations

from sipdispatch.dispatcher.algorithms.base import (
    EMPTY_SELECTION,
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    finish,
    next_round_robin,
    register,
)
from sipdispatch.dispatcher.hashing import hash_authusername, hash_callid, hash_uri, hash_value
from sipdispatch.dispatcher.sets import DestinationSet


class HashCallId(Algorithm):
    """0: hash over the Call-ID."""

    number = 0
    name = "hash-callid"
    aliases = ("callid",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        return finish(dset, hash_callid(ctx.call_id), opts)


class _UriHash(Algorithm):
    def _uri(self, ctx: SelectContext) -> str:
        raise NotImplementedError

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        h = hash_uri(self._uri(ctx), user_only=opts.hash_user_only)
        if h is None:
            return EMPTY_SELECTION  # Kamailio: "can't get ... uri hash", select fails
        return finish(dset, h, opts)


class HashFromUri(_UriHash):
    """1: hash over the From URI (user, host and non-default port)."""

    number = 1
    name = "hash-from"
    aliases = ("hash-from-uri",)

    def _uri(self, ctx: SelectContext) -> str:
        return ctx.from_uri


class HashToUri(_UriHash):
    """2: hash over the To URI."""

    number = 2
    name = "hash-to"
    aliases = ("hash-to-uri",)

    def _uri(self, ctx: SelectContext) -> str:
        return ctx.to_uri


class HashRuri(_UriHash):
    """3: hash over the Request-URI."""

    number = 3
    name = "hash-ruri"
    aliases = ("hash-request-uri",)

    def _uri(self, ctx: SelectContext) -> str:
        return ctx.ruri


class HashAuthUsername(Algorithm):
    """5: hash over the auth username; round-robin when the request has none."""

    number = 5
    name = "hash-auth-user"
    aliases = ("hash-auth-username", "hash-auth")

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        h = hash_authusername(ctx.auth_username)
        if h is None:
            # Kamailio ds_hash_authusername returns 1 (no credentials): round-robin.
            return finish(dset, next_round_robin(dset), opts, update_last=True)
        return finish(dset, h, opts)


class HashHeader(Algorithm):
    """7: hash over the value of the configured header (Kamailio ``hash_pvar``)."""

    number = 7
    name = "hash-header"
    aliases = ("hash-pvar",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        if not opts.hash_header or ctx.header_value is None:
            return EMPTY_SELECTION  # Kamailio: no hash_pvar -> "can't get PV hash"
        h = hash_value(ctx.header_value(opts.hash_header))
        if h is None:
            return EMPTY_SELECTION  # Kamailio: empty string -> select fails
        return finish(dset, h, opts)


register(HashCallId)
register(HashFromUri)
register(HashToUri)
register(HashRuri)
register(HashAuthUsername)
register(HashHeader)
