"""The JSON-RPC methods of the admin interface, with Kamailio's names, parameters and results.

Each method is a coroutine ``handler(target, params)`` over a running proxy seen
through :class:`~sipdispatch.admin.protocol.AdminTarget`; it returns the ``result``
value or raises :class:`RpcError`. :class:`Rpc` runs them and wraps them in JSON-RPC
2.0 (request validation, ``id``, error objects), counting calls; it knows nothing of
HTTP: ``admin/http.py`` is the transport.

Kamailio references (read for behaviour, not copied): ``dispatcher_rpc_*`` and
``ds_rpc_print_set`` in ``src/modules/dispatcher/dispatcher.c``,
``ds_reinit_state*``/``ds_add_dst``/``ds_remove_dst`` in ``dispatch.c``,
``core_version``/``core_uptime`` in ``src/core/core_cmd.c`` and the fault
handling of ``src/modules/jsonrpcs/jsonrpcs_mod.c``. Where we differ, and why,
is written down in ``docs/admin.md``.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sipdispatch import __version__
from sipdispatch.admin.protocol import AdminTarget, cluster_of
from sipdispatch.admin.stats import select, statistics
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.dispatcher.hashing import hash_slot
from sipdispatch.dispatcher.listfile import make_destination, parse_destination_uri
from sipdispatch.dispatcher.sets import DispatcherSets
from sipdispatch.dispatcher.states import DS_NOPING_DST, DS_PROBING_DST, parse_state_letters
from sipdispatch.health.state import is_ping_reply_alive
from sipdispatch.hooks import HookLoadError
from sipdispatch.service import Busy
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import Response
from sipdispatch.store import StoreError
from sipdispatch.transport.capture import (
    FILTER_ALL,
    Capture,
    CaptureError,
    call_ladder,
    call_summary,
    list_captures,
)

log = logging.getLogger("sipdispatch.admin")

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

PARSE_ERROR: Final = -32700
"""JSON-RPC 2.0: the body is not JSON (jsonrpcs text "Parse Error")."""
INVALID_REQUEST: Final = -32600
"""JSON-RPC 2.0: not a valid request object (jsonrpcs text "Invalid Request")."""
METHOD_NOT_FOUND: Final = -32601
"""JSON-RPC 2.0: no such method (jsonrpcs text "Method Not Found"; see docs/admin.md)."""
INTERNAL_ERROR: Final = -32603
"""JSON-RPC 2.0: a bug on our side (jsonrpcs text "Internal Error")."""
FAULT: Final = 500
"""The code Kamailio's RPC methods give to ``rpc->fault`` for every failure."""

# Kamailio's fault texts (dispatcher.c); ours add ": <detail>" after them.
INVALID_PARAMETERS: Final = "Invalid Parameters"
INVALID_STATE: Final = "Invalid State Parameter"
UNKNOWN_STATE: Final = "Unknown State Value"
STATE_UPDATE_FAILED: Final = "State Update Failed"
RELOAD_FAILED: Final = "Reload Failed"
ONGOING_RELOAD: Final = "Ongoing reload"
NO_SETS: Final = "No Destination Sets"
ADD_FAILED: Final = "Adding dispatcher dst failed"
REMOVE_FAILED: Final = "Removing dispatcher dst failed"
PING_UPDATE_FAILED: Final = "Ping State Update Failed"
CLUSTER_OFF: Final = "Cluster is off"
PING_FAILED: Final = "Ping Failed"
"""Ours: ``dispatcher.ping`` could not send (Kamailio has no such method)."""
GROUP_NOT_FOUND: Final = "Destination Group Not Found"
OC_UPDATE_FAILED: Final = "Overload Control Not Updated"
"""Ours: ``dispatcher.oc_set`` changed nothing (Kamailio's ``ds_oc_set_attrs`` returns -2)."""
OC_UPDATED: Final = "Ok. Overload control updated."

# Kamailio's success texts (rpc->rpl_printf in dispatcher.c).
RELOADED: Final = "Ok. Dispatcher successfully reloaded."
STATE_UPDATED: Final = "Ok. Dispatcher state updated."
DST_ADDED: Final = "Ok. Dispatcher destination added."
DST_REMOVED: Final = "Ok. Dispatcher destination removed."


class RpcError(Exception):
    """A JSON-RPC error: ``code`` and a ``message`` a person can act on.

    Method failures use Kamailio's fault code (500) and start with Kamailio's
    fault text, followed by what exactly went wrong::

        Reload Failed: /etc/sipdispatch/dispatcher.list:3: could not resolve mg9 (...)
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member."""
        return {"code": self.code, "message": self.message}


def fault(text: str, detail: str = "") -> RpcError:
    """A method failure: Kamailio's ``text``, then ``detail`` when there is one."""
    return RpcError(FAULT, f"{text}: {detail}" if detail else text)


# --------------------------------------------------------------------------------------------
# Parameters (Kamailio's rpc->scan, a little more forgiving and more talkative)
# --------------------------------------------------------------------------------------------


class Params:
    """The positional parameters of one call, consumed in order.

    As ``rpc->scan`` with Kamailio's ``.`` (auto-convert) modifier: a number is
    accepted where text is expected and a decimal string where an integer is.
    JSON-RPC named parameters (an object) are taken in the order written, as
    jsonrpcs does.
    """

    def __init__(self, method: RpcMethod, values: Sequence[object], who: str = "") -> None:
        self.method = method
        self.values = list(values)
        self.who = who
        """Who called, for the state log and the log (``console``); empty for /RPC."""
        self._next = 0
        self.local = False
        """This is one worker's share of a call every worker runs (the admin worker
        runs it first and checks what is checked once for the proxy)."""
        self.fan_out: list[object] | None = None
        """Set by a method run by every worker whose share for the others differs from
        what it was given (``capture.start`` names the capture it started)."""

    @property
    def by(self) -> str:
        """`` by <who>`` when the caller is named, else empty."""
        return f" by {self.who}" if self.who else ""

    def _usage(self) -> str:
        usage = f"{self.method.name} {self.method.usage}".rstrip()
        return f"usage: {usage}"

    def _invalid(self, why: str) -> RpcError:
        return fault(INVALID_PARAMETERS, f"{why} ({self._usage()})")

    def _take(self, name: str, optional: bool) -> object | None:
        if self._next >= len(self.values):
            if optional:
                return None
            raise self._invalid(f"missing {name}")
        value = self.values[self._next]
        self._next += 1
        return value

    def _as_int(self, name: str, value: object) -> int:
        if isinstance(value, bool):
            raise self._invalid(f"{name} must be an integer, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.lstrip("+-").isdigit():  # isdigit alone takes '¹'
                return int(text)
        raise self._invalid(f"{name} must be an integer, not {value!r}")

    def _as_str(self, name: str, value: object) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self._invalid(f"{name} must be a string, not {value!r}")

    def req_int(self, name: str) -> int:
        """The next parameter, an integer; required."""
        return self._as_int(name, self._take(name, False))

    def req_str(self, name: str) -> str:
        """The next parameter, text; required."""
        return self._as_str(name, self._take(name, False))

    def opt_int(self, name: str) -> int | None:
        """The next parameter as an integer, or None when there is no more."""
        value = self._take(name, True)
        return None if value is None else self._as_int(name, value)

    def opt_str(self, name: str) -> str | None:
        """The next parameter as text, or None when there is no more."""
        value = self._take(name, True)
        return None if value is None else self._as_str(name, value)

    def done(self) -> None:
        """Refuse parameters left over (Kamailio ignores them; a typo should not pass)."""
        extra = len(self.values) - self._next
        if extra > 0:
            raise self._invalid(f"{extra} parameter(s) too many")


# --------------------------------------------------------------------------------------------
# dispatcher.list
# --------------------------------------------------------------------------------------------

LIST_NORMAL: Final = "normal"
LIST_SHORT: Final = "short"
LIST_FULL: Final = "full"

PROTO_IDS: Final = {"udp": 1, "tcp": 2, "tls": 3, "sctp": 4, "ws": 5, "wss": 6}
"""Kamailio's ``PROTO_*`` numbers (``src/core/ip_addr.h``), printed as ``PROTOID``;
0 (``PROTO_NONE``) when the URI names no transport."""


def flags_letters(dest: Destination) -> str:
    """The two FLAGS letters of ``ds_rpc_print_set``.

    Kamailio's second letter is ``P`` when probing, else ``N`` when the
    destination has the no-ping flag (32), else ``X``.
    """
    text = dest.flags_text()
    if not dest.state & DS_PROBING_DST and dest.state & DS_NOPING_DST:
        return text[0] + "N"
    return text


def _text_or_null(value: str | None) -> str | None:
    """Kamailio's jsonrpcs prints an unset ``str`` as JSON null."""
    return value if value else None


def _dest_record(
    dest: Destination, index: int, mode: str, latency: bool, runtime: bool
) -> dict[str, Any]:
    # Kamailio (6.1 and later) leads with the index in the set and ends with the
    # destination's internal unique id, in every mode.
    record: dict[str, Any] = {
        "IDX": index,
        "URI": dest.uri,
        "FLAGS": flags_letters(dest),
        "PRIORITY": dest.priority,
        "IUID": dest.iuid,
    }
    if dest.unresolved is not None:
        # Ours: why a destination loaded at start is inactive (its host did not resolve).
        record["REASON"] = dest.unresolved
    located = dest.located
    if located is not None:
        # Ours: the addresses DNS gave a destination located by NAPTR/SRV/A, in the
        # answer's order, and whether the last ping of each answered.
        record["ADDRESSES"] = [
            {
                "IPADDR": a.ip,
                "PORT": a.port,
                "TRANSPORT": a.transport,
                "TARGET": a.target,
                "PRIORITY": a.priority,
                "WEIGHT": a.weight,
                "UP": a.addr not in located.down,
            }
            for a in located.addresses
        ]
    if mode == LIST_FULL:
        transport = dest.sip_uri.params.get("transport")
        record.update(
            HOST=dest.host,
            IPADDR=dest.addr[0] if dest.addr is not None else "",
            PORT=dest.addr[1] if dest.addr is not None else dest.port,
            PROTOID=PROTO_IDS.get((transport or "").lower(), 0),
            # DNS refresh times do not exist here: the fields stay, as zeros, so that
            # full output keeps its shape.
            DNSTIME_SEC=0,
            DNSTIME_USEC=0,
            **_oc_fields(dest, "OC"),
        )
    attrs = dest.attrs
    if (mode != LIST_SHORT and attrs.body) or mode == LIST_FULL:
        record["ATTRS"] = {
            "BODY": _text_or_null(attrs.body),
            "DUID": _text_or_null(attrs.duid),
            "PROBING_COUNT": dest.probing_count,
            "MAXLOAD": attrs.maxload,
            "WEIGHT": attrs.weight,
            # Kamailio's attrs.rweight is the run-time value congestion control moves.
            "RWEIGHT": dest.rweight,
            "SOCKET": _text_or_null(attrs.socket),
            "SOCKNAME": _text_or_null(attrs.get("sockname")),
            "PING_SOCKET": _text_or_null(attrs.get("ping_socket")),
            "OBPROXY": _text_or_null(attrs.get("obproxy")),
            "OCMIN": dest.attrs.get_int("ocmin"),
            "OCMAX": dest.attrs.get_int("ocmax"),
        }
    if latency or mode == LIST_FULL:
        stats = dest.latency
        record["LATENCY"] = {
            "AVG": stats.average,
            "STD": stats.stdev,
            "EST": stats.estimate,
            "MAX": stats.max,
            "TIMEOUT": stats.timeout,
        }
    if runtime or mode == LIST_FULL:
        record["RUNTIME"] = {"DLGLOAD": dest.dlg_load}
    return record


def list_sets(
    sets: DispatcherSets, mode: str = LIST_NORMAL, *, latency: bool, runtime: bool
) -> dict[str, Any]:
    """``dispatcher.list``'s result for ``sets``: ``{"NRSETS", "RECORDS": [{"SET": ...}]}``.

    ``latency`` adds ``LATENCY`` (Kamailio: ``ds_ping_latency_stats``), ``runtime``
    adds ``RUNTIME`` (Kamailio: ``ds_hash_size > 0``); ``full`` mode shows both.
    Sets come in ascending id (Kamailio walks its AVL tree in post-order).
    """
    records = [
        {
            "SET": {
                "ID": dset.setid,
                "TARGETS": [
                    {"DEST": _dest_record(dest, i, mode, latency, runtime)}
                    for i, dest in enumerate(dset.dests)
                ],
            }
        }
        for dset in sets
    ]
    return {"NRSETS": len(sets), "RECORDS": records}


async def dispatcher_list(target: AdminTarget, params: Params) -> object:
    """``dispatcher.list [short|full]``."""
    mode_text = params.opt_str("MODE")
    params.done()
    mode = LIST_NORMAL
    if mode_text is not None and mode_text.lower() in (LIST_SHORT, LIST_FULL):
        mode = mode_text.lower()
    router = target.dispatcher.router
    router.expire_calls(target.now())  # call-load entries past hash_expire go first
    sets = router.sets
    if len(sets) == 0:
        raise fault(NO_SETS)
    dconf = target.config.dispatcher
    runtime = dconf.hash_size > 0 or router.counts_calls
    return list_sets(sets, mode, latency=dconf.ping_latency_stats, runtime=runtime)


# --------------------------------------------------------------------------------------------
# dispatcher.reload / add / remove
# --------------------------------------------------------------------------------------------


def _busy(exc: Busy) -> RpcError:
    return fault(ONGOING_RELOAD, str(exc))


def _reload_delta(target: AdminTarget, params: Params) -> None:
    """Kamailio's ``reload_delta``: a reload, add or remove within that many seconds of
    the start of the previous one is refused with ``Ongoing reload``; one that is let
    through starts the wait anew, whether it then succeeds or not. Checked once, by the
    worker the call came to."""
    delta = target.config.dispatcher.reload_delta
    if delta <= 0 or params.local:
        return
    service = target.dispatcher
    now = target.now()
    last = service.last_change
    if last is not None and now - last < delta:
        raise fault(
            ONGOING_RELOAD,
            f"the last reload, add or remove was {now - last:.1f} s ago; "
            f"dispatcher.reload_delta is {delta} s",
        )
    service.last_change = now


async def dispatcher_reload(target: AdminTarget, params: Params) -> object:
    """``dispatcher.reload``: all or nothing; on error the running list stays as it was."""
    _reload_delta(target, params)
    params.done()
    try:
        kept = await target.dispatcher.reload()
    except Busy as exc:
        raise _busy(exc) from None
    except HookLoadError as exc:
        log.error("dispatcher.reload refused, running hooks and list unchanged: %s", exc)
        raise fault(RELOAD_FAILED, f"{exc}; the running hooks and list are unchanged") from None
    except (DispatcherError, StoreError) as exc:
        log.error("dispatcher.reload refused, running list unchanged: %s", exc)
        raise fault(RELOAD_FAILED, f"{exc}; the running list is unchanged") from None
    log.info("dispatcher.reload%s: %d destinations kept their state", params.by, kept)
    return RELOADED


async def dispatcher_add(target: AdminTarget, params: Params) -> object:
    """``dispatcher.add GROUP ADDRESS [FLAGS [PRIORITY [ATTRS]]]``: in memory only."""
    _reload_delta(target, params)
    group = params.req_int("GROUP")
    address = params.req_str("ADDRESS")
    flags = params.opt_int("FLAGS") or 0
    priority = params.opt_int("PRIORITY") or 0
    attrs = params.opt_str("ATTRS") or ""
    params.done()
    try:
        dest = make_destination(group, address, flags, priority, attrs, where="dispatcher.add")
        await target.dispatcher.add(dest)
    except Busy as exc:
        raise _busy(exc) from None
    except DispatcherError as exc:
        raise fault(ADD_FAILED, str(exc)) from None
    log.warning(
        "dispatcher.add%s: set %d %s added in memory (a reload drops it)",
        params.by,
        group,
        dest.uri,
    )
    return DST_ADDED


async def dispatcher_remove(target: AdminTarget, params: Params) -> object:
    """``dispatcher.remove GROUP ADDRESS``: in memory only; exact URI match, as Kamailio."""
    _reload_delta(target, params)
    group = params.req_int("GROUP")
    address = params.req_str("ADDRESS")
    params.done()
    try:
        uri, _ = parse_destination_uri(address.strip())
    except ParseError as exc:
        raise fault(REMOVE_FAILED, f"bad URI {address!r}: {exc}") from None
    try:
        await target.dispatcher.remove(group, uri)
    except Busy as exc:
        raise _busy(exc) from None
    except LookupError as exc:
        raise fault(REMOVE_FAILED, str(exc)) from None
    log.warning(
        "dispatcher.remove%s: set %d %s removed in memory (a reload restores it)",
        params.by, group, uri,
    )  # fmt: skip
    return DST_REMOVED


# --------------------------------------------------------------------------------------------
# dispatcher.set_state / set_duid_state / ping_active
# --------------------------------------------------------------------------------------------


def _state_arg(text: str) -> str:
    if not text:
        raise fault(INVALID_STATE, "the state is empty (use ap, ip, tp, ax, ix, tx or dx)")
    try:
        parse_state_letters(text)
    except ValueError:
        raise fault(
            UNKNOWN_STATE, f"{text!r}: use a/i/t/d (or 1/0/3/2), optionally followed by p"
        ) from None
    return text


async def _set_state(target: AdminTarget, params: Params, by_duid: bool) -> object:
    # As Kamailio: the three parameters are read first ("Invalid Parameters"), then
    # the state is checked.
    text = params.req_str("STATE")
    group = params.req_int("GROUP")
    address = params.req_str("DUID" if by_duid else "ADDRESS")
    params.done()
    letters = _state_arg(text)
    router = target.dispatcher.router
    dset = router.sets.get(group)
    if dset is None:
        raise fault(STATE_UPDATE_FAILED, f"destination set {group} not found")
    method = "dispatcher.set_duid_state" if by_duid else "dispatcher.set_state"
    if address == "all":  # Kamailio compares exactly "all"
        chosen = list(dset.dests)
    elif by_duid:
        chosen = dset.find_duid(address)
        if not chosen:
            raise fault(STATE_UPDATE_FAILED, f"set {group} has no destination with duid {address}")
    else:
        found = dset.find(address.strip())
        if found is None:
            raise fault(STATE_UPDATE_FAILED, f"set {group} has no destination {address}")
        chosen = [found]
    bits = parse_state_letters(letters)
    now = target.now()
    for dest in chosen:
        router.set_state(dest, bits, f"{method} {letters}{params.by}", now)
    return STATE_UPDATED


async def dispatcher_set_state(target: AdminTarget, params: Params) -> object:
    """``dispatcher.set_state STATE GROUP ADDRESS|all``."""
    return await _set_state(target, params, by_duid=False)


async def dispatcher_set_duid_state(target: AdminTarget, params: Params) -> object:
    """``dispatcher.set_duid_state STATE GROUP DUID|all``."""
    return await _set_state(target, params, by_duid=True)


async def dispatcher_ping_active(target: AdminTarget, params: Params) -> object:
    """``dispatcher.ping_active [STATE]``: read or switch the OPTIONS keepalives."""
    new = params.opt_int("STATE")
    params.done()
    prober = target.prober
    pinging = target.config.dispatcher.ping_interval > 0
    # Before the prober starts, pings will run if they are configured.
    old = int(prober.active if prober is not None else pinging)
    if new is None:
        return {"OldPingState": old}
    if prober is None:
        raise fault(
            PING_UPDATE_FAILED,
            "probing is not running (dispatcher.ping_interval is 0 or the prober is off)",
        )
    prober.active = new != 0
    if new != 0 and not old and pinging:
        # Pings back on: refresh every destination's state now rather than one
        # ping_interval later.
        prober.ping_now()
    log.warning("dispatcher.ping_active: pings %s", "on" if new else "off")
    return {"NewPingState": new, "OldPingState": old}


async def dispatcher_ping(target: AdminTarget, params: Params) -> object:
    """``dispatcher.ping GROUP ADDRESS``: one ping (``ping_method``) to one destination
    now, whatever the probing mode; the result once it finishes (within ``fr_timer``).

    Ours (Kamailio pings only on its timer or for all, with ``ping_active``). The ping
    counts as any other: latency statistics and the state machine; a change of state
    is in the state log, its reason naming the caller."""
    group = params.req_int("GROUP")
    address = params.req_str("ADDRESS")
    params.done()
    prober = target.prober
    if prober is None:
        raise fault(PING_FAILED, "the prober is not running yet")
    dset = target.dispatcher.router.sets.get(group)
    if dset is None:
        raise fault(PING_FAILED, f"destination set {group} not found")
    dest = dset.find(address.strip())
    if dest is None:
        raise fault(PING_FAILED, f"set {group} has no destination {address}")
    if dest.unresolved is not None:
        raise fault(PING_FAILED, f"set {group} {dest.uri}: {dest.unresolved}")
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[tuple[int, str, int]] = loop.create_future()

    def done(status: int, response: Response | None, ms: int, _change: object) -> None:
        reason = response.reason if response is not None else "no reply"
        if not finished.done():
            finished.set_result((status, reason, ms))

    if not prober.probe(dest, target.now(), params.who or "rpc", done):
        raise fault(PING_FAILED, f"set {group} {dest.uri} is no longer in the running list")
    # The core ends the ping after fr_timer at the latest; this is only a backstop.
    bound = target.config.transaction.fr_timer / 1000 * 2 + 5
    try:
        status, reason, ms = await asyncio.wait_for(asyncio.shield(finished), bound)
    except TimeoutError:
        raise fault(PING_FAILED, f"no result within {bound:g} s") from None
    method = target.config.dispatcher.ping_method
    alive = is_ping_reply_alive(
        status, target.config.dispatcher.ping_reply_codes,
        target.config.dispatcher.ping_reply_classes,
    )  # fmt: skip
    live = prober.current(dest) or dest
    return {
        "SET": group,
        "URI": dest.uri,
        "METHOD": method,
        "CODE": status,
        "REASON": reason,
        "ALIVE": alive,
        "LATENCY": ms,
        "FLAGS": flags_letters(live),
    }


# --------------------------------------------------------------------------------------------
# dispatcher.hash, core.*, system.*
# --------------------------------------------------------------------------------------------


async def dispatcher_hash(target: AdminTarget, params: Params) -> object:
    """``dispatcher.hash NSLOTS VAL1 [VAL2]``: Kamailio's ``ds_get_hash`` and its slot."""
    nslots = params.req_int("NSLOTS")
    v1 = params.req_str("VAL1")
    v2 = params.opt_str("VAL2")
    params.done()
    hashid, slot = hash_slot(nslots, v1, v2)
    return {"hashid": hashid, "slot": slot}


def _oc_fields(dest: Destination, prefix: str) -> dict[str, int]:
    """A destination's overload control as Kamailio lists it (``ocrate``, ``ocidx``,
    ``ocseq``, ``octime_sec``/``_usec``: the wall-clock time it ends; zeros for none)."""
    oc = dest.oc
    if oc is None:
        rate = index = seq = sec = usec = 0
    else:
        rate, index, seq = oc.rate, oc.index, max(int(oc.seq), 0)
        until = time.time() + (oc.until - time.monotonic()) if oc.until > 0 else 0.0
        sec, usec = int(until), int((until - int(until)) * 1_000_000)
    upper = prefix.isupper()
    names = ("RATE", "IDX", "SEQ", "TIME_SEC", "TIME_USEC")
    return {
        prefix + (n if upper else n.lower()): v
        for n, v in zip(names, (rate, index, seq, sec, usec), strict=True)
    }


async def dispatcher_oclist(target: AdminTarget, params: Params) -> object:
    """``dispatcher.oclist GROUP``: the overload control of each destination of a set
    (Kamailio's: ``[{"group", "uri", "flags", "priority", "ocrate", "ocidx", "ocseq",
    "octime_sec", "octime_usec", "ocmin", "ocmax"}]``)."""
    group = params.req_int("GROUP")
    params.done()
    dset = target.dispatcher.router.sets.get(group)
    if dset is None:
        raise fault(GROUP_NOT_FOUND, f"set {group}")
    out = []
    for dest in dset.dests:
        record: dict[str, Any] = {
            "group": group, "uri": dest.uri, "flags": dest.state, "priority": dest.priority,
        }  # fmt: skip
        record.update(_oc_fields(dest, "oc"))
        record["ocmin"] = dest.attrs.get_int("ocmin")
        record["ocmax"] = dest.attrs.get_int("ocmax") or 100
        out.append(record)
    return out


async def dispatcher_oc_set(target: AdminTarget, params: Params) -> object:
    """``dispatcher.oc_set GROUP ADDRESS RATE VALIDITY SEQ``: Kamailio's
    ``ds_oc_set_attrs`` as a command: algorithm 64 leaves the destination out of
    ``RATE`` choices in 100 (0..100, within its ``ocmin``/``ocmax``) for ``VALIDITY``
    milliseconds (0 or less: 500), when ``SEQ`` is newer than the control in force."""
    group = params.req_int("GROUP")
    address = params.req_str("ADDRESS")
    rate = params.req_int("RATE")
    validity = params.req_int("VALIDITY")
    seq = params.req_int("SEQ")
    params.done()
    if not 0 <= rate <= 100:
        raise fault(INVALID_PARAMETERS, f"RATE must be 0..100, not {rate}")
    router = target.dispatcher.router
    dset = router.sets.get(group)
    if dset is None:
        raise fault(GROUP_NOT_FOUND, f"set {group}")
    dest = dset.find(address.strip())
    if dest is None:
        raise fault(OC_UPDATE_FAILED, f"set {group} has no destination {address}")
    seconds = validity / 1000 if validity > 0 else -1.0
    if not router.set_overload(dest, rate, seconds, float(seq), target.now()):
        held = dest.oc.seq if dest.oc is not None else 0
        raise fault(OC_UPDATE_FAILED, f"sequence {seq} is not newer than {held:g}")
    return OC_UPDATED


async def pike_top(target: AdminTarget, params: Params) -> object:
    """``pike.top [LIMIT]``: the sources with the most requests dropped over the flood
    limit, most first (``[{"IP", "DROPPED"}]``; empty when the limit is off)."""
    limit = params.opt_int("LIMIT")
    params.done()
    sources = target.sources
    if sources is None:
        return []
    return [{"IP": ip, "DROPPED": hits} for ip, hits in sources.hot(limit or 10)]


async def stats_get_statistics(target: AdminTarget, params: Params) -> object:
    """``stats.get_statistics all|GROUP:|NAME ...``: ``["core:rcv_requests = 12", ...]``."""
    names: list[str] = []
    while (name := params.opt_str("NAME")) is not None:
        names.append(name)
    lines = select(statistics(target), names)
    if not lines:
        raise fault(INVALID_PARAMETERS, f"no statistic named {' '.join(names)}")
    return lines


def version_string() -> str:
    """``core.version``: ``sipdispatch 0.1.0 (x86_64/linux)`` (Kamailio: its full version)."""
    return f"sipdispatch {__version__} ({platform.machine() or 'unknown'}/{sys.platform})"


async def core_version(target: AdminTarget, params: Params) -> object:
    """``core.version``."""
    params.done()
    return version_string()


def _ctime(when: float) -> str:
    return time.ctime(when)


async def core_uptime(target: AdminTarget, params: Params) -> object:
    """``core.uptime``: ``{"now", "up_since", "uptime"}`` as Kamailio (ctime text, seconds)."""
    params.done()
    now = time.time()
    started = target.started
    since = started if started is not None else now
    return {"now": _ctime(now), "up_since": _ctime(since), "uptime": int(now - since)}


async def system_list_methods(target: AdminTarget, params: Params) -> object:
    """``system.listMethods``: every method name."""
    params.done()
    return list(METHODS)


async def system_method_help(target: AdminTarget, params: Params) -> object:
    """``system.methodHelp METHOD``: the method's documentation and usage."""
    name = params.req_str("METHOD")
    params.done()
    method = METHODS.get(name)
    if method is None:
        raise RpcError(FAULT, f"command not found: {name}")
    return f"{method.doc} Usage: {method.name} {method.usage}".rstrip()


async def cluster_nodes(target: AdminTarget, params: Params) -> object:
    """``cluster.nodes``: the live nodes of the cluster, the destinations each pings, and
    the Redis this node uses (``REDIS``: its address, no password)."""
    params.done()
    cluster = cluster_of(target)
    if cluster is None:
        raise fault(CLUSTER_OFF, "standalone node: [cluster] redis_url and sentinels are not set")
    return {"NODES": cluster.nodes(), "REDIS": cluster.redis_info()}


# --------------------------------------------------------------------------------------------
# The method table
# --------------------------------------------------------------------------------------------

Handler = Callable[[AdminTarget, Params], Awaitable[object]]


@dataclass(frozen=True)
class RpcMethod:
    """One RPC method."""

    name: str
    handler: Handler
    usage: str
    """Parameters, for messages: ``STATE GROUP ADDRESS|all``."""
    doc: str
    """One sentence for ``system.methodHelp``."""
    every_worker: bool = False
    """It changes the running proxy: with several worker processes, every worker runs
    it too before the call answers."""


# --------------------------------------------------------------------------------------------
# capture.* (ours: pcap on demand and the ladder of failed calls; docs/capture.md)
# --------------------------------------------------------------------------------------------

CAPTURE_FAILED: Final = "Capture Failed"
DEFAULT_CAPTURE_SECONDS: Final = 60


def _capture(target: AdminTarget) -> Capture:
    capture: Capture | None = getattr(target, "capture", None)
    if capture is None:
        raise fault(CAPTURE_FAILED, "the proxy is not running yet")
    return capture


async def capture_start(target: AdminTarget, params: Params) -> object:
    """``capture.start [all|CALL-ID|IP[:PORT] [SECONDS [NAME]]]``: write the messages
    that match to a new pcap file under ``[capture] dir``."""
    what = params.opt_str("FILTER") or "all"
    seconds = params.opt_int("SECONDS")
    name = params.opt_str("NAME")
    params.done()
    capture = _capture(target)
    if seconds is None:
        seconds = min(DEFAULT_CAPTURE_SECONDS, int(capture.max_seconds))
    try:
        rec = capture.start(what, seconds, name)
    except CaptureError as exc:
        raise fault(CAPTURE_FAILED, str(exc)) from None
    params.fan_out = [what, seconds, rec.name]
    return rec.describe()


async def capture_stop(target: AdminTarget, params: Params) -> object:
    """``capture.stop [NAME|all]``: end captures now; what each one wrote."""
    name = params.opt_str("NAME")
    params.done()
    capture = _capture(target)
    if name not in (None, FILTER_ALL) and name not in capture.running:
        ended = capture.ended.get(name)
        if ended is None:
            raise fault(CAPTURE_FAILED, f"no capture named {name} (see capture.list)")
        return [ended.describe()]  # it ended on its own meanwhile
    return [rec.describe() for rec in capture.stop(name)]


async def capture_list(target: AdminTarget, params: Params) -> object:
    """``capture.list``: the pcap files under ``[capture] dir``, newest first, each
    capture once (with several workers, one file per worker)."""
    params.done()
    return list_captures(_capture(target))


async def capture_calls(target: AdminTarget, params: Params) -> object:
    """``capture.calls``: the failed calls whose messages are kept, newest first."""
    params.done()
    ladder = _capture(target).ladder
    mine = [call_summary(k) for k in ladder.calls()] if ladder is not None else []
    for answer in await target.gather("ladder"):
        if answer.get("ok") and isinstance(answer.get("data"), list):
            mine.extend(answer["data"])
    mine.sort(key=lambda c: -float(c.get("at", 0)))
    return mine


async def capture_ladder(target: AdminTarget, params: Params) -> object:
    """``capture.ladder CALL-ID``: one kept call's messages, oldest first."""
    call_id = params.req_str("CALL-ID")
    params.done()
    ladder = _capture(target).ladder
    kept = ladder.find(call_id) if ladder is not None else None
    if kept is not None:
        return call_ladder(kept)
    for answer in await target.gather(f"ladder:{call_id}"):
        if answer.get("ok") and isinstance(answer.get("data"), dict):
            return answer["data"]
    raise fault(CAPTURE_FAILED, f"no failed call {call_id!r} is kept (see capture.calls)")


_TABLE: Final = (
    RpcMethod("dispatcher.list", dispatcher_list, "[short|full]",
              "Return the content of dispatcher sets."),
    RpcMethod("dispatcher.reload", dispatcher_reload, "",
              "Reload dispatcher destination sets from the list file or database.", True),
    RpcMethod("dispatcher.set_state", dispatcher_set_state, "STATE GROUP ADDRESS|all",
              "Set the state of a destination by address.", True),
    RpcMethod("dispatcher.set_duid_state", dispatcher_set_duid_state, "STATE GROUP DUID|all",
              "Set the state of a destination by duid.", True),
    RpcMethod("dispatcher.ping_active", dispatcher_ping_active, "[0|1]",
              "Manage setting on/off the pinging (keepalive) of destinations.", True),
    RpcMethod("dispatcher.add", dispatcher_add, "GROUP ADDRESS [FLAGS [PRIORITY [ATTRS]]]",
              "Add a destination address in memory.", True),
    RpcMethod("dispatcher.remove", dispatcher_remove, "GROUP ADDRESS",
              "Remove a destination address from memory.", True),
    RpcMethod("dispatcher.ping", dispatcher_ping, "GROUP ADDRESS",
              "Ping one destination now and return the reply code and latency."),
    RpcMethod("dispatcher.hash", dispatcher_hash, "NSLOTS VAL1 [VAL2]",
              "Compute the hash of the values."),
    RpcMethod("dispatcher.oclist", dispatcher_oclist, "GROUP",
              "List the overload control attributes of the destinations of a set."),
    RpcMethod("dispatcher.oc_set", dispatcher_oc_set, "GROUP ADDRESS RATE VALIDITY SEQ",
              "Set a destination's overload control (rate in 100, validity ms, sequence).",
              True),
    RpcMethod("capture.start", capture_start, "[all|CALL-ID|IP[:PORT] [SECONDS [NAME]]]",
              "Write the SIP messages that match to a pcap file under [capture] dir.", True),
    RpcMethod("capture.stop", capture_stop, "[NAME|all]",
              "Stop captures and return what each one wrote.", True),
    RpcMethod("capture.list", capture_list, "", "Lists the pcap files of the captures."),
    RpcMethod("capture.calls", capture_calls, "",
              "Lists the last failed calls whose messages are kept for the ladder."),
    RpcMethod("capture.ladder", capture_ladder, "CALL-ID",
              "Returns the messages of one kept failed call, oldest first."),
    RpcMethod("pike.top", pike_top, "[LIMIT]",
              "Lists the sources whose requests are dropped over the flood limit."),
    RpcMethod("stats.get_statistics", stats_get_statistics, "all|GROUP:|NAME ...",
              "Print the values of the statistics (all, a group such as core:, or names)."),
    RpcMethod("cluster.nodes", cluster_nodes, "",
              "Lists the live nodes of the cluster and the destinations each one pings."),
    RpcMethod("core.version", core_version, "", "Returns the version string of the server."),
    RpcMethod("core.uptime", core_uptime, "", "Returns uptime of the server."),
    RpcMethod("system.listMethods", system_list_methods, "", "Lists the RPC methods."),
    RpcMethod("system.methodHelp", system_method_help, "METHOD",
              "Returns the documentation of a method."),
)  # fmt: skip

METHODS: Final[Mapping[str, RpcMethod]] = {m.name: m for m in _TABLE}
"""Every RPC method by name, in the order ``system.listMethods`` gives them."""


# --------------------------------------------------------------------------------------------
# JSON-RPC 2.0 envelope
# --------------------------------------------------------------------------------------------


def error_response(error: RpcError, request_id: object = None) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response."""
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


class Rpc:
    """The RPC methods over one running proxy, with a count of calls by method."""

    def __init__(self, target: AdminTarget) -> None:
        self.target = target
        self.calls: Counter[str] = Counter()
        """RPC calls by method name (unknown names counted as ``unknown``)."""

    async def call(
        self, name: str, params: Sequence[object] = (), *, who: str = "", local: bool = False
    ) -> object:
        """Run method ``name`` with positional ``params``; return its result or raise
        :class:`RpcError`. ``who`` names the caller in the state log (``console``).

        A method that changes the running proxy is run by every other worker process
        too (when there are several) before this returns, unless ``local`` (this is one
        worker's share of such a call): a worker that could not is an error naming it."""
        method = METHODS.get(name)
        if method is None:
            self.calls["unknown"] += 1
            raise RpcError(METHOD_NOT_FOUND, f"Method Not Found: {name} (see system.listMethods)")
        self.calls[name] += 1
        given = Params(method, params, who)
        given.local = local
        result = await method.handler(self.target, given)
        if method.every_worker and not local:
            shared = given.fan_out if given.fan_out is not None else list(params)
            answers = await self.target.fan_out(name, shared, who)
            failed = [a for a in answers if not a.get("ok")]
            if failed:
                shown = "; ".join(f"worker {a['worker']}: {a.get('error')}" for a in failed)
                log.error("%s done by this worker but not by every other: %s", name, shown)
                raise fault(f"{name} not applied by every worker", shown)
        return result

    async def handle_payload(self, payload: object) -> dict[str, Any] | None:
        """Answer one decoded JSON-RPC 2.0 request; None for a notification (no ``id``).

        Batches (arrays) are not supported (Kamailio's jsonrpcs has none either).
        """
        if not isinstance(payload, dict):
            kind = "a batch (array)" if isinstance(payload, list) else type(payload).__name__
            return error_response(
                RpcError(INVALID_REQUEST, f"Invalid Request: expected a JSON object, got {kind}")
            )
        request_id = payload.get("id")
        if payload.get("jsonrpc") != "2.0":
            return error_response(
                RpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'), request_id
            )
        name = payload.get("method")
        if not isinstance(name, str) or not name:
            return error_response(
                RpcError(INVALID_REQUEST, 'Invalid Request: "method" must be a non-empty string'),
                request_id,
            )
        raw = payload.get("params", [])
        if isinstance(raw, dict):
            params: list[object] = list(raw.values())
        elif isinstance(raw, list):
            params = raw
        else:
            return error_response(
                RpcError(
                    INVALID_REQUEST, 'Invalid Request: "params" must be an array or an object'
                ),
                request_id,
            )
        try:
            result = await self.call(name, params)
        except RpcError as exc:
            response = error_response(exc, request_id)
        except Exception:  # a bug must not take the admin listener down
            log.exception("internal error in RPC %s", name)
            response = error_response(
                RpcError(INTERNAL_ERROR, f"Internal Error in {name}; see the proxy's log"),
                request_id,
            )
        else:
            response = {"jsonrpc": "2.0", "result": result, "id": request_id}
        if "id" not in payload:
            return None
        return response
