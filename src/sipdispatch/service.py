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
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from sipdispatch import config
from sipdispatch.checks import warn_at_load
from sipdispatch.config import Config, ConfigError, DispatcherConfig
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.listfile import Resolver, resolve_all
from sipdispatch.dispatcher.sets import DispatcherSets
from sipdispatch.dispatcher.states import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_PROBING_DST,
    DS_STATES_ALL,
    DS_TRYING_DST,
)
from sipdispatch.health.state import ORIGIN_DNS, StateChange
from sipdispatch.health.statelog import StateLog
from sipdispatch.hooks import HookLoader, HookLoadError
from sipdispatch.locator import DnsCache, Key
from sipdispatch.routing import DispatchRouter, HookFn, RouteMatch, RouterSettings, RouteRule
from sipdispatch.store import Store, load_and_resolve, open_store, resolve_each, resolve_host

log = logging.getLogger("sipdispatch.dispatcher")


class Busy(Exception):
    """Another reload, add or remove is in progress."""


class Iuids:
    """Kamailio's internal unique id of each destination loaded (its ``sruid`` with
    prefix ``dspt``, in ``dispatcher.list`` as ``IUID``): ``dspt-<start>-<pid>-<n>-<set>``,
    the start time (Unix seconds) and the process id in hex, then a counter in hex
    written lowest digit first as Kamailio writes it, then the set id."""

    def __init__(self, now: Callable[[], float] = time.time, pid: int | None = None) -> None:
        self.prefix = f"dspt-{int(now()):x}-{os.getpid() if pid is None else pid:x}-"
        self.counter = 0

    def next(self, setid: int) -> str:
        """A new id for a destination of set ``setid``."""
        self.counter = self.counter + 1 if self.counter < 0xFFFFFFFF else 1
        digits = f"{self.counter:x}"[::-1]
        return f"{self.prefix}{digits}-{setid}"

    def assign(self, dests: Iterable[Destination]) -> None:
        """Give each of ``dests`` that has none a new id."""
        for dest in dests:
            if not dest.iuid:
                dest.iuid = self.next(dest.setid)


def route_rules(
    routes: Sequence[config.RouteRule], hooks: Mapping[int, HookFn] | None = None
) -> tuple[RouteRule, ...]:
    """The router's rules from ``[[route]]`` (the schema's, validated, made into the
    router's own plain records), with the imported Python ``hooks`` by rule index."""
    hooks = hooks or {}
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
            hook=hooks.get(i),
            fallback=r.fallback_algorithms(),
        )
        for i, r in enumerate(routes)
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
    config: Config,
    sets: DispatcherSets,
    rng: random.Random,
    state_log: StateLog | None = None,
    hooks: Mapping[int, HookFn] | None = None,
) -> DispatchRouter:
    """A router over ``sets`` with the config's rules (and their imported Python
    ``hooks``) and ``[dispatcher]`` settings."""
    return DispatchRouter(
        route_rules(config.routes, hooks),
        router_settings(config.dispatcher),
        sets,
        rng,
        state_log if state_log is not None else StateLog(),
    )


class DispatcherService:
    """The destination store, the router over its destinations, and the changes of
    the destination list (reload, add, remove), one at a time."""

    def __init__(
        self,
        store: Store,
        router: DispatchRouter,
        resolver: Resolver = resolve_host,
        hooks: HookLoader | None = None,
        routes: Sequence[config.RouteRule] = (),
        dns: DnsCache | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.resolver = resolver
        """How host names are resolved (blocking: called off the event loop)."""
        self.listeners: tuple[str, ...] = ("udp", "tcp")
        """Transports the proxy listens on (``server.listen``), for the load warnings."""
        self.hooks = hooks if hooks is not None else HookLoader(())
        """The rules' Python hooks (imported afresh by every reload)."""
        self.routes = tuple(routes)
        """The ``[[route]]`` rules as configured (the router's are rebuilt from them
        when a reload re-imports the hooks)."""
        self.reloads: Counter[str] = Counter()
        """``dispatcher.reload`` outcomes: ``ok`` / ``failed``."""
        self.dns = dns
        """The DNS answers of the destinations located by DNS (host name, no port);
        None: they are resolved as any other name (A/AAAA, the URI's port)."""
        self.iuids = Iuids()
        """Gives every destination loaded its ``IUID``."""
        self.iuids.assign(router.sets.destinations())
        self.last_change: float | None = None
        """When the latest ``dispatcher.reload``, ``add`` or ``remove`` asked over RPC
        started (the RPC's clock), for ``[dispatcher] reload_delta``."""
        self.reload_listeners: list[Callable[[], None]] = []
        """Called after every successful reload asked here (the cluster tells the other
        nodes to reload too)."""
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls, config: Config, state_log: StateLog, hook_search: Sequence[str] = ()
    ) -> DispatcherService:
        """Open the store the config names and load it, and import the rules' Python
        hooks (blocking: at start-up). ``hook_search``: directories searched for hook
        modules after ``sys.path`` (the configuration file's). A hook that does not
        import is a :class:`ConfigError` naming its rule's key.

        A destination whose host does not resolve does not stop the start: it is loaded
        inactive (``IP``) with the reason, gets no calls nor pings, and
        :meth:`retry_unresolved` tries it again."""
        hooks = HookLoader(config.routes, hook_search, events=config.events.hooks)
        try:
            hooks.install(hooks.load())
            hooks.install_events(hooks.load_events())
        except HookLoadError as exc:
            raise ConfigError(f"config: {exc}", key=exc.key) from None
        d = config.dispatcher
        store = open_store(
            list_file=d.list_file,
            db_url=d.db_url,
            table_name=d.table_name,
            columns=d.columns,
            extra_attrs=d.db_extra_attrs,
        )
        rng = random.Random()  # seeded from the system's entropy
        dns = DnsCache.for_config(config.dns)
        dests = store.load()
        failed = resolve_each(dests, locate=dns.locate_blocking)
        sets = DispatcherSets(dests, rng)
        router = make_router(config, sets, rng, state_log, hooks.functions())
        service = cls(store, router, hooks=hooks, routes=config.routes, dns=dns)
        service.listeners = tuple(dict.fromkeys(a.proto for a in config.server.listen))
        for dest, reason in failed:
            service._unresolved(dest, reason)
        service.warn()
        return service

    def warn(self) -> list[str]:
        """Log what is suspicious in the running list (one warning line each)."""
        return warn_at_load(self.router.sets, self.router.routes, self.listeners)

    def _unresolved(self, dest: Destination, reason: str) -> None:
        dest.unresolved = reason
        old = dest.state
        if old & DS_DISABLED_DST:
            log.warning("set %d %s: %s (disabled)", dest.setid, dest.uri, reason)
            return
        new = (old & ~DS_TRYING_DST) | DS_INACTIVE_DST | DS_PROBING_DST
        self.router.sets.set_state(dest, new)
        change = StateChange(
            dest.setid, dest.uri, old, dest.state, f"{reason}; retried every ping interval",
            time.monotonic(), origin=ORIGIN_DNS,
        )  # fmt: skip
        self.router.state_log.record(change)

    def unresolved(self) -> list[Destination]:
        """The running destinations whose host has not resolved yet."""
        return [d for d in self.router.sets.destinations() if d.unresolved is not None]

    async def retry_unresolved(self, probing: bool) -> int:
        """Resolve again the hosts that did not resolve (off the event loop); returns how
        many did now. One that resolves gets its address; with ``probing`` its pings
        bring it back to active, else it goes back to its loaded state at once."""
        waiting = self.unresolved()
        if not waiting:
            return 0
        loop = asyncio.get_running_loop()
        done = 0
        dns = self.dns
        for dest in waiting:
            try:
                if dns is not None and dest.by_dns:
                    located = dns.located(await dns.resolve(dns.key(dest)))
                    addr = located.first.addr
                else:
                    located = None
                    addr = await loop.run_in_executor(
                        None, self.resolver, dest.host, dest.port, dest.transport
                    )
            except Exception as exc:
                dest.unresolved = f"could not resolve {dest.host}: {exc or type(exc).__name__}"
                continue
            if dest.unresolved is None:
                continue  # a reload or another retry got there first
            if located is not None:
                dest.use_located(located)
            dest.addr, dest.unresolved = addr, None
            done += 1
            reason = f"{dest.host} resolved to {addr[0]}"
            old = dest.state
            if not probing and not old & DS_DISABLED_DST:
                self.router.sets.set_state(dest, dest.flags & DS_STATES_ALL)
            if dest.state != old:
                change = StateChange(
                    dest.setid, dest.uri, old, dest.state, reason, time.monotonic(),
                    origin=ORIGIN_DNS,
                )  # fmt: skip
                self.router.state_log.record(change)
            else:
                log.info("set %d %s: %s; its pings decide its state", dest.setid, dest.uri,
                         reason)  # fmt: skip
        if done:
            self.router.addresses_changed()
        return done

    def dns_keys(self) -> set[Key]:
        """The DNS lookups the running destinations need."""
        dns = self.dns
        if dns is None:
            return set()
        return {dns.key(d) for d in self.router.sets.destinations() if d.by_dns}

    async def refresh_dns(self) -> int:
        """Look up again the DNS answers whose time has come (in the background) and
        give the destinations the answers that changed, without a reload; returns how
        many destinations got new addresses. A failed or empty lookup keeps the last
        good answer (:meth:`DnsCache.refresh_due`)."""
        dns = self.dns
        if dns is None:
            return 0
        keys = self.dns_keys()
        if not keys:
            dns.entries.clear()
            return 0
        await dns.refresh_due(keys)
        moved = 0
        for dest in self.router.sets.destinations():
            if not dest.by_dns or dest.located is None:
                continue
            entry = dns.entries.get(dns.key(dest))
            if entry is None:
                continue
            fresh = dns.located(entry)
            if fresh.same_as(dest.located):
                dest.located.expires = entry.expires
                continue
            dest.use_located(fresh)
            moved += 1
            shown = ", ".join(f"{a.transport}:{a.ip}:{a.port}" for a in fresh.addresses)
            log.info("set %d %s: addresses now %s", dest.setid, dest.uri, shown)
        if moved:
            self.router.addresses_changed()
        return moved

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
        dns = self.dns
        return load_and_resolve(
            self.store, self.resolver, dns.locate_blocking if dns is not None else None
        )

    async def reload(self, *, announce: bool = True) -> int:
        """``dispatcher.reload``: all or nothing; on error the running list and the
        running hooks stay. The rules' Python hooks are imported afresh.

        Returns how many destinations kept their state. Raises :class:`Busy`,
        ``DispatcherError``, ``StoreError`` or ``HookLoadError``. ``announce`` false: the
        reload was asked by another node of the cluster, the listeners are not told.
        """
        async with self._claim():
            loop = asyncio.get_running_loop()
            try:
                dests = await loop.run_in_executor(None, self.load)
                hooks = await loop.run_in_executor(None, self.hooks.load) if self.hooks else None
                events = None
                if self.hooks.event_specs:
                    events = await loop.run_in_executor(None, self.hooks.load_events)
            except Exception:
                self.reloads["failed"] += 1
                raise
            if hooks is not None:
                self.hooks.install(hooks)
                self.router.replace_routes(route_rules(self.routes, self.hooks.functions()))
                log.info("dispatcher.reload: %d Python hooks imported afresh", len(hooks))
            if events is not None:
                self.hooks.install_events(events)
                log.info("dispatcher.reload: %d event hooks imported afresh", len(events))
            self.iuids.assign(dests)
            kept = self.router.replace(dests)
        self.reloads["ok"] += 1
        self.warn()
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
            locate = self.dns.locate_blocking if self.dns is not None else None
            await loop.run_in_executor(None, resolve_all, [dest], resolve_host, locate)
            self.iuids.assign([dest])
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
