"""The routing seam: what the proxy core asks a router, and what a router answers.

Which destination an out-of-dialog request goes to is not decided by the core: a
:class:`Router` answers with a :class:`Plan` (targets, and the next one when a branch
fails) or a :class:`Reject`. The dispatcher's router plugs in here; tests plug in a
:class:`StaticPlan`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Header, Request


@dataclass(slots=True, init=False)
class Target:
    """One place to send a request to."""

    addr: Addr
    """Transport, host (IP, or a name the shell resolves) and port of the next hop."""
    ruri: str | None = None
    """A new Request-URI for this branch, or None to keep the request's."""
    handle: Any = None
    """The router's own reference (the dispatcher destination)."""
    headers: tuple[Header, ...] = ()
    """Header lines added at the end of the request sent to this target (a routing
    hook's ``headers``)."""
    hold: Any = None
    """Something the shell must settle before the request goes to this target, or None
    (send at once). A cluster's call-load reservation: an ``asyncio.Future`` that ends
    True (send) or False (the destination is full: :meth:`Plan.refused`). The core only
    hands it over (:meth:`~sipdispatch.sip.proxy.ProxyCore.take_held`)."""

    # Written out (init=False): compiled, it is a native call; the one dataclass
    # generates is interpreted Python, several times dearer, and one is made per branch.
    def __init__(
        self,
        addr: Addr,
        ruri: str | None = None,
        handle: Any = None,
        headers: tuple[Header, ...] = (),
    ) -> None:
        self.addr = addr
        self.ruri = ruri
        self.handle = handle
        self.headers = headers
        self.hold = None


@dataclass(slots=True)
class Reject:
    """Answer the request locally with this status."""

    status: int
    reason: str | None = None
    outcome: str = field(default="rejected", compare=False)
    """What the call log calls it (``no_route``, ``no_destination``, ...)."""


class Plan(Protocol):
    """The router's answer for one request: where it goes, and what after a failure."""

    parallel: bool
    """True to send to every target of ``first()`` at once (forking)."""

    def first(self) -> list[Target]:
        """The target (or, when parallel, the targets) to try first."""

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        """After ``failed`` answered ``status`` (408 with ``timeout`` when it never
        answered): the next target, or None to give up (ds_next_dst)."""

    def refused(self, target: Target, now: float) -> Target | None:
        """``target``'s hold ended False (its destination is full across the cluster):
        the next target, or None to answer 503. Not a failure of ``target``."""

    def answered(self, target: Target, now: float) -> None:
        """``target`` answered 2xx."""

    def finished(self, status: int, now: float) -> None:
        """The final response ``status`` went upstream (once per request)."""

    def cancelled(self, now: float) -> None:
        """The caller cancelled the request (CANCEL) before its final response."""


class Router(Protocol):
    """Decides where out-of-dialog requests go."""

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        """A plan for ``request``, or a local rejection."""

    def in_dialog(self, request: Request, now: float) -> None:
        """Told of every in-dialog request relayed (BYE releases call load)."""


class NativePlan:
    """A base for plans compiled with the core: the proxy calls the methods of a plan
    derived from it directly, and those of any other :class:`Plan` (a test's) by name.
    The methods are :class:`Plan`'s; a subclass defines them all."""

    __slots__ = ()

    def first(self) -> list[Target]:
        raise NotImplementedError

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        raise NotImplementedError

    def refused(self, target: Target, now: float) -> Target | None:
        raise NotImplementedError

    def answered(self, target: Target, now: float) -> None:
        raise NotImplementedError

    def finished(self, status: int, now: float) -> None:
        raise NotImplementedError

    def cancelled(self, now: float) -> None:
        raise NotImplementedError


class NativeRouter:
    """A base for routers compiled with the core, as :class:`NativePlan` is for plans."""

    __slots__ = ()

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        raise NotImplementedError

    def in_dialog(self, request: Request, now: float) -> None:
        raise NotImplementedError


class StaticPlan(NativePlan):
    """A plan over a fixed list of targets: serial failover on the given codes."""

    def __init__(
        self,
        targets: Iterable[Target],
        parallel: bool = False,
        failover_on: Iterable[int] = (),
        failover_on_timeout: bool = True,
    ) -> None:
        self.targets = list(targets)
        self.parallel = parallel
        self.failover_on = frozenset(failover_on)
        self.failover_on_timeout = failover_on_timeout
        self._next = 1

    def first(self) -> list[Target]:
        return list(self.targets) if self.parallel else self.targets[:1]

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        if self.parallel:
            return None
        if not (timeout and self.failover_on_timeout) and status not in self.failover_on:
            return None
        if self._next >= len(self.targets):
            return None
        target = self.targets[self._next]
        self._next += 1
        return target

    def refused(self, target: Target, now: float) -> Target | None:
        return None

    def answered(self, target: Target, now: float) -> None:
        pass

    def finished(self, status: int, now: float) -> None:
        pass

    def cancelled(self, now: float) -> None:
        pass
