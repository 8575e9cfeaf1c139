"""The dispatcher service: the shell side of the router.

The router (:mod:`sipdispatch.routing`) is pure: it routes over the destination
sets it is given. This service owns what is not pure -- the destination store (a
``dispatcher.list`` file or the ``dispatcher`` table), loading and resolving it off
the event loop, and the lock that makes a reload, an add and a remove happen one at a
time -- and hands finished destination lists to the router. The admin API and the
command line go through it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence

from sipdispatch import config
from sipdispatch.config import Config, DispatcherConfig
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.listfile import resolve_all
from sipdispatch.dispatcher.sets import DispatcherSets
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import DispatchRouter, RouteMatch, RouterSettings, RouteRule
from sipdispatch.store import Store, load_and_resolve, open_store, resolve_host

log = logging.getLogger("sipdispatch.dispatcher")


class Busy(Exception):
    """Another reload, add or remove is in progress."""


def route_rules(routes: Sequence[config.RouteRule]) -> tuple[RouteRule, ...]:
    """The router's rules from ``[[route]]`` (the schema's, validated, made into the
    router's own plain records)."""
    return tuple(
        RouteRule(
            set_id=r.set_id,
            match=RouteMatch(
                r.match.methods, r.match.domain, r.match.user_prefix, r.match.source_set
            ),
            algorithm=r.algorithm,
            mode=r.mode,
            limit=r.limit,
            failover_codes=frozenset(r.failover_codes),
            failover_classes=frozenset(r.failover_classes),
            mark_failed=r.mark_failed,
            no_destination=r.no_destination,
        )
        for r in routes
    )


def router_settings(dconf: DispatcherConfig) -> RouterSettings:
    """The router's settings from ``[dispatcher]``."""
    return RouterSettings(
        failover=dconf.failover,
        use_default=dconf.use_default,
        hash_user_only=dconf.hash_user_only,
        hash_header=dconf.hash_header,
        hash_expire=dconf.hash_expire,
        hash_initexpire=dconf.hash_initexpire,
        keep_state_on_reload=dconf.keep_state_on_reload,
        probing_threshold=dconf.probing_threshold,
        inactive_threshold=dconf.inactive_threshold,
    )


def make_router(
    config: Config, sets: DispatcherSets, rng: random.Random, state_log: StateLog | None = None
) -> DispatchRouter:
    """A router over ``sets`` with the config's rules and ``[dispatcher]`` settings."""
    return DispatchRouter(
        route_rules(config.routes),
        router_settings(config.dispatcher),
        sets,
        rng,
        state_log if state_log is not None else StateLog(),
    )


class DispatcherService:
    """The destination store, the router over its destinations, and the changes of
    the destination list (reload, add, remove), one at a time."""

    def __init__(self, store: Store, router: DispatchRouter) -> None:
        self.store = store
        self.router = router
        self.reloads: Counter[str] = Counter()
        """``dispatcher.reload`` outcomes: ``ok`` / ``failed``."""
        self.reload_listeners: list[Callable[[], None]] = []
        """Called after every successful reload asked here (the cluster tells the other
        nodes to reload too)."""
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: Config, state_log: StateLog) -> DispatcherService:
        """Open the store the config names and load it (blocking: at start-up)."""
        d = config.dispatcher
        store = open_store(list_file=d.list_file, db_url=d.db_url, table_name=d.table_name)
        rng = random.Random()  # seeded from the system's entropy
        sets = DispatcherSets(load_and_resolve(store), rng)
        return cls(store, make_router(config, sets, rng, state_log))

    @property
    def sets(self) -> DispatcherSets:
        """The running destination sets."""
        return self.router.sets

    @property
    def busy(self) -> bool:
        """A reload, add or remove is in progress."""
        return self._lock.locked()

    def _claim(self) -> asyncio.Lock:
        if self._lock.locked():
            raise Busy("another reload, add or remove is in progress; try again")
        return self._lock

    def load(self) -> list[Destination]:
        """Read and resolve the store (blocking: run it off the event loop).

        Raises DispatcherLoadError (naming the line or row) or StoreError.
        """
        return load_and_resolve(self.store)

    async def reload(self, *, announce: bool = True) -> int:
        """``dispatcher.reload``: all or nothing; on error the running list stays.

        Returns how many destinations kept their state. Raises :class:`Busy`,
        ``DispatcherError`` or ``StoreError``. ``announce`` false: the reload was
        asked by another node of the cluster, the listeners are not told.
        """
        async with self._claim():
            try:
                dests = await asyncio.get_running_loop().run_in_executor(None, self.load)
            except Exception:
                self.reloads["failed"] += 1
                raise
            kept = self.router.replace(dests)
        self.reloads["ok"] += 1
        if announce:
            for listener in list(self.reload_listeners):
                listener()
        return kept

    async def add(self, dest: Destination) -> None:
        """``dispatcher.add``: resolve ``dest`` (off the event loop) and add it to the
        running sets, in memory only (a reload drops it). Raises :class:`Busy` or
        ``DispatcherError`` when its host does not resolve."""
        async with self._claim():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, resolve_all, [dest], resolve_host)
            self.router.install(self.router.sets.added(dest))

    async def remove(self, group: int, uri: str) -> None:
        """``dispatcher.remove``: drop the destination ``uri`` of set ``group`` from the
        running sets, in memory only. Raises :class:`Busy`, or :class:`LookupError`
        saying what is not there."""
        async with self._claim():
            sets = self.router.sets
            dset = sets.get(group)
            if dset is None:
                raise LookupError(f"destination set {group} not found")
            if not any(d.uri == uri for d in dset.dests):
                raise LookupError(f"set {group} has no destination {uri}")
            self.router.install(sets.removed(group, uri))
