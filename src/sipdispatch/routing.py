"""The routing rules of ``[[route]]`` on top of the dispatcher: Kamailio's
``request_route`` + ``ds_select_dst`` + ``failure_route`` with ``ds_next_dst``.

This is the one seam between the proxy core and the dispatcher: for an
out-of-dialog request, :meth:`DispatchRouter.route` finds the first rule that
matches, selects from its set with its algorithm, and returns a plan that walks
the failover list when a branch fails with a code of ``failover_on`` or times
out, marking the failed destination as ``mark_failed`` says (ds_mark_dst).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from sipdispatch.config import Config, DispatcherConfig, RouteRule
from sipdispatch.dispatcher.algorithms import SelectContext, select
from sipdispatch.dispatcher.callload import CallLoadTable
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.sets import DispatcherSets, carry_runtime_state
from sipdispatch.dispatcher.states import parse_state_letters
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import header_key, split_name_addr
from sipdispatch.sip.message import Request
from sipdispatch.sip.proxy import Plan, Reject, Target
from sipdispatch.sip.transaction import Addr
from sipdispatch.store import Store, StoreError, load_and_resolve, open_store

log = logging.getLogger("sipdispatch.routing")

ALGORITHM_CALL_LOAD = 10
DEFAULT_ROUTE = RouteRule(set_id=1)
"""With no ``[[route]]`` at all, every request goes to set 1, round-robin (the
reference Kamailio setup: ``ds_select_dst("1", "4")``)."""


def _auth_username(request: Request) -> str | None:
    value = request.get("proxy-authorization") or request.get("authorization")
    if value is None:
        return None
    for part in value.split(","):
        name, sep, v = part.strip().partition("=")
        if sep and name.strip().lower().endswith("username"):
            return v.strip().strip('"')
    return None


def _uri_of(value: str | None) -> str:
    if not value:
        return ""
    try:
        return split_name_addr(value)[0]
    except ParseError:
        return ""


class DispatchPlan:
    """Failover along a selection (ds_next_dst), marking failed destinations."""

    __slots__ = ("_index", "call_id", "parallel", "router", "rule", "targets")

    def __init__(
        self,
        router: DispatchRouter,
        rule: RouteRule,
        targets: list[Target],
        parallel: bool,
        call_id: str,
    ) -> None:
        self.router = router
        self.rule = rule
        self.targets = targets
        self.parallel = parallel
        self.call_id = call_id
        self._index = 1

    def first(self) -> list[Target]:
        if self.parallel:
            return self.targets
        return self.targets[:1]

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        rule = self.rule
        if not (timeout or rule.is_failover(status)):
            return None
        router = self.router
        dest = failed.handle
        if rule.mark_failed and isinstance(dest, Destination):
            router.mark(dest, rule.mark_failed, f"call failed with {status}")
        if self.parallel or not router.dconf.failover or self._index >= len(self.targets):
            return None
        target = self.targets[self._index]
        self._index += 1
        if rule.algorithm == ALGORITHM_CALL_LOAD and isinstance(target.handle, Destination):
            router.calls.on_invite_sent(self.call_id, target.handle, now)
        return target

    def answered(self, target: Target, now: float) -> None:
        if self.rule.algorithm == ALGORITHM_CALL_LOAD:
            self.router.calls.on_confirmed(self.call_id, now)

    def finished(self, status: int, now: float) -> None:
        if status >= 300 and self.rule.algorithm == ALGORITHM_CALL_LOAD:
            self.router.calls.on_released(self.call_id)


class DispatchRouter:
    """Routes requests by the ``[[route]]`` rules over the dispatcher sets."""

    def __init__(
        self,
        routes: tuple[RouteRule, ...],
        dconf: DispatcherConfig,
        sets: DispatcherSets,
        rng: random.Random | None = None,
    ) -> None:
        self.routes = routes or (DEFAULT_ROUTE,)
        self.dconf = dconf
        self.rng = rng or random.Random()
        self.sets = sets
        self.calls = CallLoadTable(
            sets, hash_expire=dconf.hash_expire, hash_initexpire=dconf.hash_initexpire
        )
        self._sources: dict[tuple[str, int], int] = {}
        self._index_sources()
        self.core: Any = None
        self.shell: Any = None
        self.store: Store | None = None

    @classmethod
    def from_config(cls, config: Config) -> DispatchRouter:
        """Load the destinations named by the config (list file or database)."""
        d = config.dispatcher
        store = open_store(list_file=d.list_file, db_url=d.db_url, table_name=d.table_name)
        rng = random.Random()
        sets = DispatcherSets(load_and_resolve(store), rng)
        router = cls(config.routes, d, sets, rng)
        router.store = store
        return router

    def load(self) -> list[Destination]:
        """Read and resolve the store (blocking: run it off the event loop).

        Raises DispatcherLoadError (naming the line or row) or StoreError.
        """
        if self.store is None:
            raise StoreError("no destination store configured")
        return load_and_resolve(self.store)

    def replace(self, dests: list[Destination]) -> int:
        """Switch to a freshly loaded destination list (the second half of a reload).

        With ``keep_state_on_reload`` unchanged destinations keep their state,
        latency and load (returns how many); new ones start as loaded.
        """
        sets = DispatcherSets(dests, self.rng)
        carried = carry_runtime_state(self.sets, sets) if self.dconf.keep_state_on_reload else 0
        self.sets = sets
        self.calls.rebind(sets)
        self._index_sources()
        log.info(
            "dispatcher reloaded: %d sets, %d destinations (%d kept their state)",
            len(sets),
            len(dests),
            carried,
        )
        return carried

    async def reload(self) -> int:
        """``dispatcher.reload``: all or nothing; on error the running list stays."""
        dests = await asyncio.get_running_loop().run_in_executor(None, self.load)
        return self.replace(dests)

    def attach(self, core: Any, shell: Any) -> None:
        """Called once the proxy runs (the prober and the admin API use these)."""
        self.core, self.shell = core, shell

    def _index_sources(self) -> None:
        sources: dict[tuple[str, int], int] = {}
        for dest in self.sets.destinations():
            if dest.addr is not None:
                sources.setdefault(dest.addr, dest.setid)
        self._sources = sources

    def mark(self, dest: Destination, letters: str, why: str) -> None:
        """Set a destination's state as ``ds_mark_dst`` does, and log the change."""
        old = dest.flags_text()
        self.sets.set_state(dest, parse_state_letters(letters))
        new = dest.flags_text()
        if new != old:
            log.warning("set %d %s: %s -> %s (%s)", dest.setid, dest.uri, old, new, why)

    # -- Router interface --------------------------------------------------------

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        try:
            uri = request.uri
            domain, user = uri.host, uri.user or ""
        except ParseError:
            domain, user = "", ""  # tel: and other schemes have no SIP host
        source_set = self._sources.get((source.host, source.port))
        method = request.method
        for rule in self.routes:
            if rule.matches(method, domain, user, source_set):
                return self._dispatch(rule, request, now)
        return Reject(404, "No route")

    def _dispatch(self, rule: RouteRule, request: Request, now: float) -> Plan | Reject:
        calls = self.calls
        deadline = calls.next_deadline()
        if deadline is not None and deadline <= now:
            calls.expire(now)
        d = self.dconf
        ctx = SelectContext(
            call_id=request.call_id,
            from_uri=_uri_of(request.get("from")),
            to_uri=_uri_of(request.get("to")),
            ruri=request.uri_text,
            auth_username=_auth_username(request),
            header_value=(lambda name: request.get(header_key(name))) if d.hash_header else None,
            now=now,
            method=request.method,
        )
        selection = select(
            self.sets,
            rule.set_id,
            rule.algorithm,
            ctx,
            limit=rule.limit,
            use_default=d.use_default,
            hash_user_only=d.hash_user_only,
            hash_header=d.hash_header,
            rng=self.rng,
        )
        if not selection.targets:
            return Reject(rule.no_destination, "No destination")
        targets = [self._target(dest, rule, request) for dest in selection.targets]
        if rule.algorithm == ALGORITHM_CALL_LOAD and request.method == "INVITE":
            for t in targets if selection.parallel else targets[:1]:
                calls.on_invite_sent(request.call_id, t.handle, now)
        return DispatchPlan(self, rule, targets, selection.parallel, request.call_id)

    def _target(self, dest: Destination, rule: RouteRule, request: Request) -> Target:
        host, port = dest.addr if dest.addr is not None else (dest.host, dest.port)
        ruri: str | None = None
        attrs = dest.attrs
        if rule.mode == "domain" or attrs.prefix or attrs.strip:
            try:
                uri = request.uri.copy()
            except ParseError:
                uri = None
            if uri is not None:
                if rule.mode == "domain":
                    # ds_select_domain: the R-URI's host:port becomes the destination's.
                    uri.host, uri.port = dest.host, dest.sip_uri.port
                if attrs.prefix or attrs.strip:
                    uri.user = attrs.rewrite_user(uri.user)
                ruri = str(uri)
        return Target(Addr(dest.transport, host, port), ruri, dest)

    def in_dialog(self, request: Request, now: float) -> None:
        if request.method == "BYE" and len(self.calls):
            self.calls.on_released(request.call_id)
