"""Routing hooks in Python: the API a hook is written against, and the shell side that
imports, times and guards hooks.

A ``[[route]]`` rule with ``python = "module:function"`` calls the function with a
read-only :class:`RequestView` of the request when the rule's ``match`` fits. The
function answers with a :class:`Route` (dispatch; it may pick the set and the
algorithm, rewrite the Request-URI user and add headers), a :class:`Reject` (answer
locally) or ``None`` (go on with the next rule)::

    from sipdispatch.hooks import Reject, RequestView, Route

    def route(request: RequestView) -> Route | Reject | None:
        if request.ruri_user.startswith("44"):
            return Route(set=2, headers={"X-Carrier": "uk"}, fallback=[3])
        return None

A ``Route`` may name fallback sets, tried after its set as a rule's ``fallback`` are
(Kamailio's ``ds_select_routes``; ``Route.select_routes("2=4;3=8")`` reads its rules).

The router (:mod:`sipdispatch.routing`) is pure and compiled: it calls a plain
function and takes back plain records. What is not pure lives here: importing the
module (afresh on ``dispatcher.reload``), the clock that times every call, the
exception that becomes a 500, the rate-limited log lines and the per-hook counters
that ``/metrics`` shows. See docs/hooks.md.

``[events] on_destination_down`` / ``on_destination_up`` name functions of the same
form that are told when a destination goes down or comes back up: each gets a
read-only :class:`DestinationEvent` (Kamailio's ``event_route[dispatcher:dst-down]``);
:mod:`sipdispatch.events` calls them, off the SIP path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import logging
import sys
import time
import traceback
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Final

from sipdispatch.config import RouteRule as RouteConfig
from sipdispatch.config.values import TOKEN_CHARS, Invalid, parse_algorithm
from sipdispatch.routing import HookFn, HookRoute, RequestView
from sipdispatch.sip.headers import header_key
from sipdispatch.sip.router import Reject as CoreReject

__all__ = [
    "HOOK_FAILED",
    "SLOW_CALL",
    "DestinationEvent",
    "EventHookFn",
    "Hook",
    "HookLoadError",
    "HookLoader",
    "HookStats",
    "Reject",
    "RequestView",
    "Route",
    "import_function",
]

log = logging.getLogger("sipdispatch.hooks")

SLOW_CALL: Final = 0.003
"""Seconds a hook call may take before it is logged as slow. The proxy's own work for a
whole call is a few hundred microseconds (BENCHMARKS.md); a hook that takes
milliseconds runs on the event loop and holds every other message back meanwhile."""
LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines of one kind (error, slow) for one hook; the ones in
between are counted and the next line says how many."""
HOOK_FAILED: Final = CoreReject(500, None, "hook_failed")
"""The answer to a request whose hook raised or returned something unusable (the call
log's outcome ``hook_failed``)."""
BUCKETS: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
)
"""Upper bounds (seconds) of the ``sipdispatch_hook_seconds`` histogram's buckets, from
10 µs (a dictionary lookup) to 100 ms (a hook doing I/O it should not do)."""

OUTCOMES: Final = ("route", "reject", "pass", "error")
"""What a hook call ended in: a Route, a Reject, None, an exception (or a bad answer)."""

MANAGED_HEADERS: Final = frozenset(
    {
        "via",
        "route",
        "record-route",
        "call-id",
        "cseq",
        "from",
        "to",
        "max-forwards",
        "content-length",
        "content-type",
    }
)
"""Headers the proxy writes or the transaction depends on: a hook may not add them."""

_USER_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/%"
)
"""RFC 3261 §25.1 ``user``: unreserved, user-unreserved and escapes (``%HH``)."""


# -- what a hook returns ---------------------------------------------------------------


def _checked_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(headers, Mapping):
        raise TypeError(f"Route headers must be a mapping of name to value, not {headers!r}")
    lines = []
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not TOKEN_CHARS.issuperset(name):
            raise ValueError(f"Route header name {name!r} is not a SIP header name (a token)")
        key = header_key(name)
        if key in MANAGED_HEADERS:
            raise ValueError(f"Route header {name!r} is the proxy's own; a hook may not add it")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"Route header {name!r} value must be a string on one line")
        lines.append((key, name, value.strip()))
    return tuple(lines)


_PARALLEL: Final = parse_algorithm("parallel")
_FALLBACK_FORM: Final = (
    'a list of set ids and {"set": N, "algorithm": A} mappings, e.g. '
    '[3, {"set": 4, "algorithm": "serial"}]'
)


def _fallback_entry(item: object, algorithm: int | None) -> tuple[int, int | None]:
    """One entry of ``Route.fallback`` as (set, algorithm or None for the route's)."""
    number: int | None = None
    if isinstance(item, Mapping):
        unknown = [key for key in item if key not in ("set", "algorithm")]
        if unknown:
            raise ValueError(
                f"Route fallback entry {item!r}: unknown key {unknown[0]!r} (set, algorithm)"
            )
        if "set" not in item:
            raise ValueError(f"Route fallback entry {item!r} has no set")
        setid = item["set"]
        if item.get("algorithm") is not None:
            try:
                number = parse_algorithm(item["algorithm"])
            except Invalid as exc:
                raise ValueError(
                    f"Route fallback algorithm {item['algorithm']!r}: {exc.allowed}"
                ) from None
    else:
        setid = item
    if type(setid) is not int or setid < 0:
        raise ValueError(
            f"Route fallback entry {item!r} is not a destination set id (int >= 0); "
            f"fallback is {_FALLBACK_FORM}"
        )
    if number == _PARALLEL or (number is None and algorithm == _PARALLEL):
        raise ValueError(
            f"Route fallback set {setid}: parallel forking (12) cannot be a fallback set's "
            "algorithm (a failover tries one destination at a time); give its own"
        )
    return setid, number


def _checked_fallback(
    fallback: Iterable[object] | None, setid: int | None, algorithm: int | None
) -> tuple[tuple[int, int | None], ...] | None:
    if fallback is None:
        return None
    if isinstance(fallback, str | bytes | Mapping) or not isinstance(fallback, Iterable):
        raise TypeError(f"Route fallback must be {_FALLBACK_FORM}, not {fallback!r}")
    entries: list[tuple[int, int | None]] = []
    for item in fallback:
        entry = _fallback_entry(item, algorithm)
        if entry[0] == setid:
            raise ValueError(f"Route fallback set {setid} is the Route's own set")
        if any(entry[0] == seen for seen, _ in entries):
            raise ValueError(f"Route fallback set {entry[0]} is given twice")
        entries.append(entry)
    return tuple(entries)


def _routes_rule(rule: str, rules: str) -> tuple[int, int]:
    setid, eq, algorithm = (part.strip() for part in rule.partition("="))
    if not (eq and setid.isascii() and setid.isdigit() and algorithm):
        raise ValueError(
            f"Route.select_routes({rules!r}): {rule!r} is not setid=algorithm "
            '(Kamailio\'s rules: "1=4;2=8")'
        )
    try:
        number = parse_algorithm(
            int(algorithm) if algorithm.isascii() and algorithm.isdigit() else algorithm
        )
    except Invalid as exc:
        raise ValueError(f"Route.select_routes({rules!r}): {rule!r}: {exc.allowed}") from None
    return int(setid), number


@dataclass(frozen=True, slots=True)
class Route:
    """Dispatch the request: to ``set`` with ``algorithm`` (None: the rule's own),
    then, when that set fails or has nothing usable, to the ``fallback`` sets in order
    (None: the rule's ``fallback``); the Request-URI user replaced by ``user`` (None:
    kept), ``headers`` added to the request forwarded to each destination tried.

    Checked when made (a bad value raises here, in the hook, with a clear message),
    so a Route made once at import time costs nothing per call.
    """

    set: int | None = None
    """Destination set id, or None for the rule's ``set``."""
    algorithm: int | str | None = None
    """Algorithm number or name (``"round-robin"``, ``"weight"``...), or None for the
    rule's ``algorithm``."""
    user: str | None = None
    """New Request-URI user part (a destination's ``strip``/``prefix`` then apply)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header name -> value, added at the end of the forwarded request."""
    fallback: Sequence[int | Mapping[str, int | str]] | None = None
    """Sets tried after ``set``, in order, as a rule's ``fallback``: a set id (with this
    Route's algorithm, else the rule's) or ``{"set": 3, "algorithm": "serial"}`` (not
    12); None for the rule's ``fallback``, ``[]`` for none."""
    _plain: HookRoute = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setid = self.set
        if setid is not None and (type(setid) is not int or setid < 0):
            raise ValueError(f"Route set must be a destination set id (int >= 0), not {setid!r}")
        algorithm = self.algorithm
        number: int | None = None
        if algorithm is not None:
            try:
                number = parse_algorithm(algorithm)
            except Invalid as exc:
                raise ValueError(f"Route algorithm {algorithm!r}: {exc.allowed}") from None
        user = self.user
        if user is not None and (
            not isinstance(user, str) or not user or not _USER_CHARS.issuperset(user)
        ):
            raise ValueError(f"Route user {user!r} is not a SIP URI user part")
        given = self.fallback
        if isinstance(given, Iterable) and not isinstance(given, str | bytes | Mapping):
            given = tuple(given)  # kept as given, but not a list the hook may change later
            object.__setattr__(self, "fallback", given)
        fallback = _checked_fallback(given, setid, number)
        plain = HookRoute(setid, number, user, _checked_headers(self.headers), fallback)
        object.__setattr__(self, "_plain", plain)

    @classmethod
    def select_routes(
        cls, rules: str, *, user: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Route:
        """Kamailio's ``ds_select_routes(rules, ...)``: ``"1=4;2=8"`` is set 1 with
        algorithm 4, then set 2 with algorithm 8 as its fallback (algorithms by number
        or name). The rule's ``mode`` and ``limit`` apply, as its ``ds_select_routes``
        arguments would."""
        parsed = [_routes_rule(rule, rules) for rule in rules.split(";") if rule.strip()]
        if not parsed:
            raise ValueError(f"Route.select_routes({rules!r}): no setid=algorithm rule")
        (setid, number), rest = parsed[0], parsed[1:]
        return cls(
            set=setid,
            algorithm=number,
            user=user,
            headers=headers if headers is not None else {},
            fallback=[{"set": s, "algorithm": a} for s, a in rest],
        )


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the request locally with ``code`` (300..699) and ``reason`` (None: the
    standard phrase)."""

    code: int
    """SIP status code, 300..699."""
    reason: str | None = None
    """Reason phrase, or None for the code's standard one."""
    _plain: CoreReject = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        code = self.code
        if type(code) is not int or not 300 <= code <= 699:
            raise ValueError(f"Reject code must be an int 300..699, not {code!r}")
        reason = self.reason
        if reason is not None and (
            not isinstance(reason, str) or any(c in reason for c in "\r\n\0")
        ):
            raise ValueError(f"Reject reason must be a string on one line, not {reason!r}")
        object.__setattr__(self, "_plain", CoreReject(code, reason))


# -- what an event hook is given -------------------------------------------------------

EVENT_DOWN: Final = "dst-down"
"""A destination stopped getting calls (Kamailio's ``dispatcher:dst-down``)."""
EVENT_UP: Final = "dst-up"
"""A destination gets calls again (Kamailio's ``dispatcher:dst-up``)."""


@dataclass(frozen=True, slots=True)
class DestinationEvent:
    """A destination went down or came back up: what an event hook is given, what the
    event command finds in its environment and what the webhook receives as JSON (the
    same names everywhere: :meth:`as_dict`, :meth:`environment`)."""

    event: str
    """``"dst-down"`` or ``"dst-up"`` (Kamailio's event routes ``dispatcher:dst-down`` and
    ``dispatcher:dst-up``)."""
    set: int
    """The destination's set id (Kamailio ``$dsv(setid)``)."""
    uri: str
    """The destination's URI (Kamailio ``$ru`` / ``$dsv(uri)`` in the event route)."""
    old_state: str
    """Its FLAGS letters before, as ``dispatcher.list`` shows them (``AP``)."""
    new_state: str
    """Its FLAGS letters now (``IP``)."""
    reason: str
    """Why, for people: ``no reply to OPTIONS (408), 2 missed in a row``."""
    code: int | None
    """The ping's status code when a ping made it (408: no reply in time; Kamailio
    ``$dsv(code)``), else None."""
    origin: str
    """``"probe"`` (a ping's result) or ``"call"`` (a failed call, ``mark_failed``)."""
    time: float
    """When, in seconds since the Unix epoch."""
    duid: str = ""
    """The destination's ``duid`` attr, ``""`` when it has none."""
    node: str = ""
    """The proxy that raised it: the cluster node id, else the host name."""

    @property
    def down(self) -> bool:
        """It went down."""
        return self.event == EVENT_DOWN

    @property
    def up(self) -> bool:
        """It came back up."""
        return self.event == EVENT_UP

    @property
    def route(self) -> str:
        """Kamailio's name of the event route, ``dispatcher:dst-down``."""
        return f"dispatcher:{self.event}"

    def as_dict(self) -> dict[str, object]:
        """The event as the webhook's JSON object."""
        return {
            "event": self.event,
            "set": self.set,
            "uri": self.uri,
            "duid": self.duid,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "reason": self.reason,
            "code": self.code,
            "origin": self.origin,
            "time": round(self.time, 3),
            "node": self.node,
        }

    def environment(self) -> dict[str, str]:
        """The event as the command's environment variables (``SIPDISPATCH_EVENT`` ...);
        an absent code is ``""``."""
        out: dict[str, str] = {}
        for name, value in self.as_dict().items():
            if value is None:
                text = ""
            elif isinstance(value, float):
                text = f"{value:.3f}"
            else:
                text = str(value)
            out[f"SIPDISPATCH_{name.upper()}"] = text
        return out

    def describe(self) -> str:
        """One log line: ``dst-down set 1 sip:mg1:5060 (AP -> IP: ...)``."""
        return (
            f"{self.event} set {self.set} {self.uri} "
            f"({self.old_state} -> {self.new_state}: {self.reason})"
        )


EventHookFn = Callable[[DestinationEvent], object]
"""An event hook: a plain function, or an ``async def`` one, given the event; what it
returns is ignored."""


# -- timing and guarding one hook ------------------------------------------------------


class HookStats:
    """One hook's counters: calls by outcome, a histogram of their durations, slow
    calls. Kept across re-imports of its module (the metrics are counters)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.buckets: list[int] = [0] * (len(BUCKETS) + 1)
        """Calls per bucket (not cumulative); the last one is above every bound."""
        self.seconds = 0.0
        """Total time spent in the hook."""
        self.slow = 0
        """Calls longer than :data:`SLOW_CALL`."""

    @property
    def calls(self) -> int:
        """Every call counted."""
        return sum(self.outcomes.values())

    def observe(self, seconds: float, outcome: str) -> None:
        """Count one call of ``seconds`` that ended in ``outcome``."""
        self.outcomes[outcome] += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.seconds += seconds


class Throttle:
    """At most one log line per :data:`LOG_INTERVAL` for one kind of event."""

    __slots__ = ("held", "next_at")

    def __init__(self) -> None:
        self.next_at = float("-inf")
        self.held = 0

    def due(self, now: float) -> int | None:
        """How many were held back since the last line, when a line is due now."""
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held = self.held, 0
        self.next_at = now + LOG_INTERVAL
        return held


def more_since(held: int) -> str:
    return f" (and {held} more since the last line)" if held else ""


def raised_at(exc: BaseException) -> str:
    """``file.py:12 in route``: the innermost frame, where the hook failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"


class Hook:
    """One rule's hook as the router calls it: the user's function, timed, its
    exceptions turned into a 500, its answer checked and made plain.

    ``clock`` (seconds, monotonic) times the calls and paces the log lines; tests
    pass a virtual one.
    """

    def __init__(
        self,
        key: str,
        name: str,
        function: Callable[[RequestView], object],
        stats: HookStats | None = None,
        clock: Callable[[], float] = time.perf_counter,
        slow: float = SLOW_CALL,
    ) -> None:
        self.key = key
        """The rule's key, ``route[0].python``."""
        self.name = name
        """``module:function`` as configured."""
        self.function = function
        self.stats = stats if stats is not None else HookStats()
        self.clock = clock
        self.slow = slow
        self._errors = Throttle()
        self._slow = Throttle()

    def __repr__(self) -> str:
        return f"<Hook {self.key} = {self.name!r}>"

    def __call__(self, view: RequestView) -> HookRoute | CoreReject | None:
        clock = self.clock
        start = clock()
        try:
            answer = self.function(view)
        except Exception as exc:  # the hook's bug must not take the proxy down
            end = clock()
            self._done(end - start, "error", end)
            held = self._errors.due(end)
            if held is not None:
                log.error(
                    "%s = %r raised %s: %s%s; answered 500%s",
                    self.key, self.name, type(exc).__name__, exc, raised_at(exc), more_since(held),
                )  # fmt: skip
            return HOOK_FAILED
        end = clock()
        if answer is None:
            self._done(end - start, "pass", end)
            return None
        if isinstance(answer, Route):
            self._done(end - start, "route", end)
            return answer._plain
        if isinstance(answer, Reject):
            self._done(end - start, "reject", end)
            return answer._plain
        self._done(end - start, "error", end)
        held = self._errors.due(end)
        if held is not None:
            log.error(
                "%s = %r returned %.80r: expected Route, Reject or None; answered 500%s",
                self.key, self.name, answer, more_since(held),
            )  # fmt: skip
        return HOOK_FAILED

    def _done(self, seconds: float, outcome: str, now: float) -> None:
        stats = self.stats
        stats.observe(seconds, outcome)
        if seconds > self.slow:
            stats.slow += 1
            held = self._slow.due(now)
            if held is not None:
                log.warning(
                    "%s = %r took %.1f ms (over %.1f ms): it runs on the event loop and "
                    "holds every other message back; blocking I/O belongs elsewhere%s",
                    self.key, self.name, seconds * 1000, self.slow * 1000, more_since(held),
                )  # fmt: skip


# -- importing -------------------------------------------------------------------------


class HookLoadError(Exception):
    """A hook cannot be imported: its module is missing, does not import, or has no such
    function. ``str(error)`` names the rule's key and the hook:
    ``route[1].python = "myhooks:route": cannot import myhooks: ...``."""

    def __init__(self, key: str, name: str, reason: str) -> None:
        super().__init__(f'{key} = "{name}": {reason}')
        self.key = key
        self.name = name
        self.reason = reason


def _find_spec(module: str, path: Sequence[str] | None) -> importlib.machinery.ModuleSpec | None:
    """The module's spec from the import system's finders, ignoring ``sys.modules``
    (which holds the module as it was last imported)."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find(module, path)
        if spec is not None:
            return spec
    return None


def _fresh_module(module: str) -> ModuleType:
    """Import ``module`` anew, as a new module object, from its current source.

    ``importlib.reload`` would run the new source over the old module's namespace, so
    a module that fails half-way would leave the running hook's globals half
    replaced; here the running hook keeps its own module untouched until the new one
    has imported completely. The source is compiled from the file itself, not from a
    cached ``.pyc``, whose timestamp check could miss an edit made within the same
    second. Only this module is imported afresh: the modules it imports are not.
    """
    parent, _, _leaf = module.rpartition(".")
    path: Sequence[str] | None = None
    if parent:
        package = importlib.import_module(parent)
        path = getattr(package, "__path__", None)
        if path is None:
            raise ModuleNotFoundError(f"{parent} is not a package", name=module)
    spec = _find_spec(module, path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {module!r}", name=module)
    new = importlib.util.module_from_spec(spec)
    old = sys.modules.get(module)
    sys.modules[module] = new
    try:
        origin = spec.origin
        if spec.has_location and origin is not None and origin.endswith(".py"):
            code = compile(Path(origin).read_bytes(), origin, "exec", dont_inherit=True)
            exec(code, new.__dict__)
        else:
            spec.loader.exec_module(new)
    except BaseException:
        if old is not None:
            sys.modules[module] = old
        else:
            sys.modules.pop(module, None)
        raise
    return new


def import_function(key: str, name: str) -> Callable[[RequestView], object]:
    """Import ``module:function`` afresh and return the function. Raises
    :class:`HookLoadError` saying why not (a missing module, an exception while the
    module ran -- with where it happened --, no such function, an ``async`` one)."""
    function = _import_callable(key, name)
    if inspect.iscoroutinefunction(function):
        module_name, _, function_name = name.partition(":")
        raise HookLoadError(
            key, name, f"{module_name}.{function_name} is async: a hook is a plain function"
        )
    return function


def import_event_hook(
    key: str, name: str, modules: dict[str, ModuleType] | None = None
) -> EventHookFn:
    """Import an event hook's ``module:function`` afresh (a plain function or an
    ``async def`` one). Raises :class:`HookLoadError` as :func:`import_function`.
    ``modules``: the modules imported afresh so far by the same load, by name (the
    down and up hooks of one module share its globals)."""
    return _import_callable(key, name, modules)


def _import_callable(
    key: str, name: str, modules: dict[str, ModuleType] | None = None
) -> Callable[[object], object]:
    module_name, _, function_name = name.partition(":")
    importlib.invalidate_caches()  # files added or changed since the last import
    try:
        module = modules.get(module_name) if modules is not None else None
        if module is None:
            module = _fresh_module(module_name)
        if modules is not None:
            modules[module_name] = module
    except SyntaxError as exc:
        where = f" ({Path(exc.filename or '?').name}, line {exc.lineno})"
        reason = f"SyntaxError: {exc.msg}{where}"
        raise HookLoadError(key, name, f"cannot import {module_name}: {reason}") from None
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}{raised_at(exc)}"
        raise HookLoadError(key, name, f"cannot import {module_name}: {reason}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise HookLoadError(key, name, f"module {module_name} has no {function_name}")
    if not callable(function):
        raise HookLoadError(key, name, f"{module_name}.{function_name} is not a function")
    return function  # type: ignore[no-any-return]


class HookLoader:
    """The Python hooks of a configuration's ``[[route]]`` rules: imports them (at
    start-up, and afresh on every reload) and keeps each one's counters.

    ``search`` are directories searched after ``sys.path`` (the configuration file's
    own directory: a hook module may sit next to the file).
    """

    def __init__(
        self,
        routes: Sequence[RouteConfig],
        search: Sequence[str] = (),
        clock: Callable[[], float] = time.perf_counter,
        events: Mapping[str, str] | None = None,
    ) -> None:
        self.specs: tuple[tuple[int, str], ...] = tuple(
            (i, r.python) for i, r in enumerate(routes) if r.python
        )
        """(rule index, ``module:function``) of every rule with a hook."""
        self.event_specs: dict[str, str] = dict(events or {})
        """The event hooks: key (``events.on_destination_down``) -> ``module:function``."""
        self.event_hooks: dict[str, EventHookFn] = {}
        """The event hooks running now, by key."""
        self.search = tuple(search)
        self.clock = clock
        self.stats: dict[int, HookStats] = {i: HookStats() for i, _ in self.specs}
        """Counters per rule index, kept across re-imports."""
        self.hooks: dict[int, Hook] = {}
        """The hooks running now, by rule index."""

    def __bool__(self) -> bool:
        return bool(self.specs)

    def load(self) -> dict[int, Hook]:
        """Import every hook afresh (blocking: the module runs, and may read files).
        Nothing changes for the running hooks; :meth:`install` the result. Raises
        :class:`HookLoadError` for the first one that fails."""
        for directory in self.search:
            if directory not in sys.path:
                sys.path.append(directory)
        loaded: dict[int, Hook] = {}
        for index, name in self.specs:
            key = f"route[{index}].python"
            function = import_function(key, name)
            loaded[index] = Hook(key, name, function, self.stats[index], self.clock)
        return loaded

    def install(self, hooks: dict[int, Hook]) -> None:
        """Make ``hooks`` the running ones (the router gets them with its rules)."""
        self.hooks = hooks

    def load_events(self) -> dict[str, EventHookFn]:
        """Import every event hook afresh (blocking), as :meth:`load`; nothing changes
        for the running ones until :meth:`install_events`."""
        for directory in self.search:
            if directory not in sys.path:
                sys.path.append(directory)
        modules: dict[str, ModuleType] = {}
        return {
            key: import_event_hook(key, name, modules) for key, name in self.event_specs.items()
        }

    def install_events(self, hooks: dict[str, EventHookFn]) -> None:
        """Make ``hooks`` the running event hooks."""
        self.event_hooks = hooks

    def functions(self) -> dict[int, HookFn]:
        """The running hooks by rule index, as the router's rules take them."""
        return dict(self.hooks)
