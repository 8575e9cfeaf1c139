"""The web console: a page of the admin listener for the operator.

``GET /`` serves our own small page (``admin/static/``: HTML, CSS and JS, no build
step, nothing fetched from elsewhere); the page follows the proxy through
Server-Sent Events at ``GET /console/events`` (a JSON snapshot every second, and at
once when a destination changes state) and acts through ``POST /console/action``.

It reads and acts on the proxy only as the JSON-RPC methods do: through
:class:`~sipdispatch.admin.protocol.AdminTarget`, with the RPC's own listing
(:func:`~sipdispatch.admin.rpc.list_sets`) and its methods run by
:class:`~sipdispatch.admin.rpc.Rpc` (``dispatcher.set_state`` for drain and enable,
``dispatcher.reload``, ``dispatcher.add``, ``dispatcher.remove``), named ``console``
so that the state log says who did it.

Security (``[admin]``): ``console = "off"`` serves nothing, ``"read-only"`` refuses
every action. With ``token`` set the console asks for it once (``/console/login``)
and then keeps a session in an HttpOnly, SameSite=Strict cookie; ``/RPC`` and
``/metrics`` keep their Bearer token. Every state-changing request carries the
page's CSRF token in the ``X-CSRF-Token`` header (per session, or per listener
without a token) as JSON: a page of another site can neither read the token nor
send that header without the browser asking us first. A POST whose ``Origin`` is not
the listener's own is refused too. Without a token (a loopback listener) the console
answers only requests addressed to a loopback name or address (``Host``): a page of
another site whose name was made to resolve to 127.0.0.1 gets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from aiohttp import web

from sipdispatch import __version__
from sipdispatch.admin.figures import (
    WINDOW,
    CallFigures,
    dest_key,
    in_progress_of,
    merge_rows,
    setup_summary,
)
from sipdispatch.admin.protocol import AdminTarget, cluster_of
from sipdispatch.admin.rpc import (
    ADD_FAILED,
    LIST_FULL,
    REMOVE_FAILED,
    Rpc,
    RpcError,
    fault,
    list_sets,
)
from sipdispatch.config.values import is_loopback
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.dispatcher.listfile import parse_destination_uri
from sipdispatch.health.state import ORIGIN_WORKER
from sipdispatch.sip.errors import ParseError
from sipdispatch.store import StoreError
from sipdispatch.transport.capture import read_capture

log = logging.getLogger("sipdispatch.admin")

WHO: Final = "console"
"""How the state log and the log name the console's actions."""
COOKIE: Final = "sipdispatch_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SESSION_SECONDS: Final = 12 * 3600
"""A login lasts this long."""
MAX_SESSIONS: Final = 1000
"""Sessions kept at most (the oldest go first)."""
TICK: Final = 1.0
"""Seconds between two snapshots on the event stream."""
COALESCE: Final = 0.05
"""After a state change, wait this long for the changes that come with it."""
EVENTS_SHOWN: Final = 30
"""State log entries in a snapshot (the newest)."""
STATIC: Final = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
"""The files served under ``/console/static/``."""
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ACTIONS: Final = (
    "drain", "enable", "probe", "reload", "add", "remove", "capture_start", "capture_stop",
)  # fmt: skip
LOGIN_FAILURES: Final = 5
"""Wrong tokens from one address within :data:`LOGIN_WINDOW` before it is refused."""
LOGIN_WINDOW: Final = 60.0
"""Seconds a wrong token counts against its address."""
MAX_LOGIN_ADDRESSES: Final = 10_000
"""Addresses whose failures are remembered at most (the oldest go first)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _asset(name: str) -> str:
    return resources.files("sipdispatch.admin").joinpath("static", name).read_text("utf-8")


class LoginLimit:
    """Wrong tokens per client address: after :data:`LOGIN_FAILURES` within
    :data:`LOGIN_WINDOW` seconds, every login from that address is refused (429) until
    the oldest of them is that old. ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        failures: int = LOGIN_FAILURES,
        window: float = LOGIN_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self._failed: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failed.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[address]
            return None
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        now = self.clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.failures:
            return 0.0
        return times[0] + self.window - now

    def failed(self, address: str) -> None:
        """Count a wrong token from ``address``."""
        now = self.clock()
        times = self._recent(address, now)
        if times is None:
            while len(self._failed) >= MAX_LOGIN_ADDRESSES:
                del self._failed[next(iter(self._failed))]
            times = self._failed[address] = deque()
        times.append(now)
        if len(times) > self.failures:
            times.popleft()

    def succeeded(self, address: str) -> None:
        """The right token: the address's failures are forgotten."""
        self._failed.pop(address, None)


@dataclass(frozen=True, slots=True)
class _Failed:
    """An action that ran and found a failure (a probe nobody answered): shown as an
    error, though nothing was refused."""

    message: str


@dataclass(frozen=True)
class _Session:
    csrf: str
    expires: float


class Console:
    """The console's routes over one running proxy (registered by the admin server)."""

    def __init__(self, target: AdminTarget, rpc: Rpc) -> None:
        self.target = target
        self.rpc = rpc
        admin = target.config.admin
        self.mode = admin.console
        self._token = admin.token.encode("utf-8")
        self._csrf = secrets.token_urlsafe(32)
        """The CSRF token when there is no login (one per listener)."""
        self._sessions: dict[str, _Session] = {}
        self.figures = CallFigures()
        """Each destination's recent calls and latency, as this process saw them."""
        self._streams: set[asyncio.Event] = set()
        self._closing = False
        self.limit = LoginLimit()
        """Wrong tokens per client address."""
        self.logins: Counter[str] = Counter()
        """Console logins by result: ``ok``, ``wrong`` (token), ``limited`` (refused,
        too many wrong tokens from the address)."""

    @property
    def writable(self) -> bool:
        return self.mode == "read-write"

    def add_routes(self, app: web.Application) -> None:
        """Register the console's routes (none when it is off)."""
        if self.mode == "off":
            return
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/", self._page),
            ("GET", "/console/login", self._login_page),
            ("POST", "/console/login", self._login),
            ("POST", "/console/logout", self._logout),
            ("GET", "/console/static/{name}", self._static),
            ("GET", "/console/state", self._state),
            ("GET", "/console/events", self._events),
            ("POST", "/console/action", self._action),
            ("GET", "/console/calls", self._calls),
            ("GET", "/console/ladder", self._ladder),
            ("GET", "/console/captures", self._captures),
            ("GET", "/console/capture/{name}.pcap", self._download),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind the checks every console request passes first."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            why = self._foreign(request)
            if why is not None:
                return self._refused(421 if "Host" in why else 403, why)
            return await handler(request)

        return guarded

    def _foreign(self, request: web.Request) -> str | None:
        """Why the request does not come from this listener's own pages, or None."""
        if not self._token and not is_loopback(request.url.host or ""):
            return (
                f"Host {request.host!r} is not a loopback name or address; without "
                "admin.token the console answers only those"
            )
        origin = request.headers.get("Origin")
        # host:port only: TLS ended in front of the listener changes the scheme.
        if (
            request.method == "POST"
            and origin is not None
            and origin.partition("://")[2] != request.host
        ):
            return f"Origin {origin!r} is not this listener ({request.host})"
        return None

    def close(self) -> None:
        """End the event streams (the listener is stopping)."""
        self._closing = True
        for wake in self._streams:
            wake.set()

    # -- sessions ----------------------------------------------------------------------------

    def _session(self, request: web.Request) -> _Session | None:
        """The request's session: the console's own when no token is set."""
        if not self._token:
            return _Session(self._csrf, float("inf"))
        sid = request.cookies.get(COOKIE, "")
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires < time.time():
            del self._sessions[sid]
            return None
        return session

    def _new_session(self) -> str:
        now = time.time()
        for sid in [s for s, v in self._sessions.items() if v.expires < now]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = _Session(secrets.token_urlsafe(32), now + SESSION_SECONDS)
        return sid

    @staticmethod
    def _refused(status: int, why: str) -> web.Response:
        log.warning("console request refused: %s", why)
        return web.json_response({"ok": False, "error": why}, status=status)

    def _csrf_ok(self, request: web.Request, session: _Session) -> bool:
        sent = request.headers.get(CSRF_HEADER, "")
        return hmac.compare_digest(sent.encode("utf-8"), session.csrf.encode("utf-8"))

    # -- pages -------------------------------------------------------------------------------

    @staticmethod
    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(
            text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )

    async def _page(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            raise web.HTTPSeeOther("/console/login")
        page = (
            _asset("index.html")
            .replace("{{csrf}}", html.escape(session.csrf))
            .replace("{{mode}}", html.escape(self.mode))
            .replace("{{login}}", "yes" if self._token else "no")
            .replace("{{version}}", html.escape(__version__))
        )
        return self._html(page)

    def _login_html(self, message: str = "", status: int = 200) -> web.Response:
        text = _asset("login.html").replace("{{message}}", html.escape(message))
        return self._html(text, status)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if not self._token or self._session(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._login_html()

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not self._token:
            raise web.HTTPSeeOther("/")
        address = request.remote or ""
        wait = self.limit.retry_after(address)
        if wait > 0:
            self.logins["limited"] += 1
            seconds = max(1, int(-(-wait // 1)))
            log.warning("console login refused: too many wrong tokens from %s", address)
            page = self._login_html(
                f"Too many wrong tokens from your address: try again in {seconds} s.",
                status=429,
            )
            page.headers["Retry-After"] = str(seconds)
            return page
        form = await request.post()
        given = form.get("token", "")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.strip().encode("utf-8"), self._token
        ):
            self.limit.failed(address)
            self.logins["wrong"] += 1
            log.warning("console login refused: wrong token from %s", address)
            return self._login_html("Wrong token.", status=401)
        self.limit.succeeded(address)
        self.logins["ok"] += 1
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(
            COOKIE,
            self._new_session(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        log.info("console login from %s", request.remote)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None or not self._csrf_ok(request, session):
            return self._refused(403, "logout without a session or its CSRF token")
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.Response(status=303, headers={"Location": "/console/login"})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        return web.Response(text=_asset(name), content_type=kind, headers=SECURITY_HEADERS)

    # -- the live view -----------------------------------------------------------------------

    async def _state(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            return self._refused(401, "log in first (/console/login)")
        return web.json_response(await self.snapshot(), headers=SECURITY_HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            return self._refused(401, "log in first (/console/login)")
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/event-stream",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        wake = asyncio.Event()
        self._streams.add(wake)
        unsubscribe = self.target.state_log.subscribe(lambda _change: wake.set())
        try:
            seen: int | None = None
            while not self._closing:
                snapshot = await self.snapshot(seen)
                seen = snapshot["seq"]
                data = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"))
                await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), TICK)
                    await asyncio.sleep(COALESCE)
        except (ConnectionError, RuntimeError):
            pass  # the page went away
        finally:
            unsubscribe()
            self._streams.discard(wake)
        return response

    async def snapshot(self, since: int | None = None) -> dict[str, Any]:
        """What the page shows, as JSON. Each destination's latency chart is its whole
        ``history``, or with ``since`` (the ``seq`` of a snapshot the page has) only
        the points sampled after it, as ``tail``. The calls are the whole proxy's:
        with several worker processes, every worker's added up."""
        target = self.target
        router = target.dispatcher.router
        now = target.now()
        router.expire_calls(now)
        sets = router.sets
        listing = list_sets(sets, LIST_FULL, latency=True, runtime=True)
        dests = [dest for dset in sets for dest in dset.dests]
        figures = self.figures
        figures.sample(dests, now)
        others = await target.gather("console")
        rows = merge_rows(
            figures.rows(dests, in_progress_of(target)),
            [o["data"] for o in others if o.get("ok")],
        )
        out_sets: list[dict[str, Any]] = []
        for dset, record in zip(sets, listing["RECORDS"], strict=True):
            out: list[dict[str, Any]] = []
            for dest, entry in zip(dset.dests, record["SET"]["TARGETS"], strict=True):
                listed = entry["DEST"]
                latency = listed["LATENCY"]
                row = rows[dest_key(dest)]
                out.append(
                    {
                        "uri": listed["URI"],
                        "flags": listed["FLAGS"],
                        "priority": listed["PRIORITY"],
                        "weight": listed["ATTRS"]["WEIGHT"],
                        "attrs": dest.attrs.body,
                        "description": dest.description,
                        "address": f"{listed['IPADDR']}:{listed['PORT']}",
                        "latency": {
                            "avg": round(latency["AVG"], 1),
                            "est": round(latency["EST"], 1),
                            "max": latency["MAX"],
                            "timeouts": latency["TIMEOUT"],
                            "samples": dest.latency.count,
                        },
                        **self._chart(figures.of(dest).history, since),
                        "in_progress": row["in_progress"],
                        "load": listed["RUNTIME"]["DLGLOAD"],
                        "dispatched": row["dispatched"],
                        "cps": round(row["cps"], 2),
                        "recent": {
                            "answered": row["answered"],
                            "rejected": row["rejected"],
                            "timeout": row["timeout"],
                            "setup": setup_summary(row["setups"]),
                        },
                    }
                )
            out_sets.append({"id": record["SET"]["ID"], "dests": out})
        wall = time.time()
        events = [
            {
                "at": wall - (now - change.at),
                "set": change.setid,
                "uri": change.uri,
                "old": change.old,
                "new": change.new,
                "reason": change.reason,
                "origin": change.origin,
            }
            for change in list(target.state_log.events)[-EVENTS_SHOWN:]
            if change.origin != ORIGIN_WORKER
        ]
        events.reverse()
        return {
            "time": wall,
            "version": __version__,
            "mode": self.mode,
            "pinging": target.config.dispatcher.ping_interval > 0,
            "latency_stats": target.config.dispatcher.ping_latency_stats,
            "busy": target.dispatcher.busy,
            "sets": out_sets,
            "events": events,
            "seq": figures.seq,
            "window": WINDOW,
            "cluster": self._cluster(),
        }

    def _chart(
        self, history: deque[float | None], since: int | None
    ) -> dict[str, list[float | None]]:
        seq = self.figures.seq
        if since is None or seq - since >= len(history):
            return {"history": list(history)}
        new = seq - since
        return {"tail": list(history)[len(history) - new :] if new else []}

    def _cluster(self) -> dict[str, Any] | None:
        """The cluster's live nodes as ``cluster.nodes`` gives them; None standalone."""
        cluster = cluster_of(self.target)
        if cluster is None:
            return None
        redis = cluster.redis_info()
        return {
            "self": cluster.id,
            "up": cluster.up,
            "redis": redis["MASTER"],
            "sentinel_master": redis["SENTINEL_MASTER"],
            "nodes": [
                {
                    "id": node["ID"],
                    "address": node["ADDRESS"],
                    "last_seen": node["LAST_SEEN"],
                    "self": node["SELF"],
                    "probes": node["PROBES"],
                }
                for node in cluster.nodes()
            ],
        }

    # -- the SIP of failed calls and the captures ------------------------------------------

    async def _read(self, request: web.Request, method: str, *params: object) -> web.Response:
        """An RPC's result as JSON for the page (the failed calls, a ladder, the
        captures); its error as a 404 with the reason."""
        if self._session(request) is None:
            return self._refused(401, "log in first (/console/login)")
        try:
            result = await self.rpc.call(method, list(params), who=WHO)
        except RpcError as exc:
            return web.json_response(
                {"ok": False, "error": exc.message}, status=404, headers=SECURITY_HEADERS
            )
        return web.json_response(result, headers=SECURITY_HEADERS)

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, "capture.calls")

    async def _ladder(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, "capture.ladder", request.query.get("call_id", ""))

    async def _captures(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, "capture.list")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """A capture's pcap file (its workers' files merged in time order)."""
        if self._session(request) is None:
            return self._refused(401, "log in first (/console/login)")
        name = request.match_info["name"]
        capture = getattr(self.target, "capture", None)
        if capture is None:
            raise web.HTTPNotFound()
        data = await asyncio.get_running_loop().run_in_executor(
            None, read_capture, capture.directory, name
        )
        if data is None:
            raise web.HTTPNotFound(text=f"no capture named {name}")
        return web.Response(
            body=data,
            content_type="application/vnd.tcpdump.pcap",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="{name}.pcap"',
            },
        )

    # -- actions -----------------------------------------------------------------------------

    async def _action(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return self._refused(401, "log in first (/console/login)")
        if not self._csrf_ok(request, session):
            return self._refused(403, f"missing or wrong CSRF token (the {CSRF_HEADER} header)")
        if not self.writable:
            return self._refused(403, "the console is read-only (admin.console)")
        if request.content_type != "application/json":
            return self._refused(415, "send the action as application/json")
        try:
            body = await request.json()
        except ValueError:
            return self._refused(400, "the body is not JSON")
        if not isinstance(body, dict):
            return self._refused(400, "the body must be a JSON object")
        action = body.get("action")
        run = self._runner(action, body)
        if run is None:
            return self._refused(400, f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        try:
            result = await run()
        except RpcError as exc:
            log.warning("console %s refused: %s", action, exc.message)
            return web.json_response({"ok": False, "error": exc.message}, status=422)
        if isinstance(result, _Failed):  # done, and what it found is a failure
            return web.json_response({"ok": True, "failed": True, "message": result.message})
        return web.json_response({"ok": True, "message": result})

    def _runner(
        self, action: object, body: dict[str, Any]
    ) -> Callable[[], Awaitable[object]] | None:
        """The RPC call an action makes."""
        group = body.get("set")
        uri = body.get("uri")

        def call(method: str, *params: object) -> Callable[[], Awaitable[object]]:
            return lambda: self.rpc.call(method, list(params), who=WHO)

        if action == "drain":
            return call("dispatcher.set_state", "dx", group, uri)
        if action == "enable":
            return call("dispatcher.set_state", "ap", group, uri)
        if action == "probe":
            return lambda: self._probe(group, uri)
        if action == "reload":
            return call("dispatcher.reload")
        if action == "add":
            return lambda: self._store_add(body)
        if action == "remove":
            return lambda: self._store_remove(group, uri)
        if action == "capture_start":
            seconds = body.get("seconds")
            return lambda: self._capture_start(str(body.get("filter") or "all"), seconds)
        if action == "capture_stop":
            return lambda: self._capture_stop(str(body.get("name") or "all"))
        return None

    async def _capture_stop(self, name: str) -> str:
        stopped = await self.rpc.call("capture.stop", [name], who=WHO)
        assert isinstance(stopped, list)
        if not stopped:
            return "No capture was running."
        return " ".join(
            f"Capture {c['NAME']} ended: {c['PACKETS']} packets, {c['BYTES']} bytes."
            for c in stopped
        )

    async def _capture_start(self, what: str, seconds: object) -> str:
        params: list[object] = [what] if seconds in (None, "") else [what, seconds]
        started = await self.rpc.call("capture.start", params, who=WHO)
        assert isinstance(started, dict)
        return (
            f"Capture {started['NAME']} started ({started['FILTER']}) until "
            f"{time.strftime('%H:%M:%S', time.localtime(started['UNTIL']))}."
        )

    async def _probe(self, group: object, uri: object) -> str | _Failed:
        result = await self.rpc.call("dispatcher.ping", [group, uri], who=WHO)
        assert isinstance(result, dict)
        how = f"{result['METHOD']} {result['URI']}: "
        if result["ALIVE"]:
            how += f"{result['CODE']} {result['REASON']} in {result['LATENCY']} ms"
        elif result["CODE"] == 408 and result["REASON"] == "no reply":
            how += f"no reply within {result['LATENCY']} ms (408)"
        else:
            how += f"answered {result['CODE']} {result['REASON']} in {result['LATENCY']} ms"
        how += f"; now {result['FLAGS']}"
        return how if result["ALIVE"] else _Failed(how)

    async def _reload_after(self, what: str, undo: Callable[[], str] | None) -> str:
        """Reload after ``what`` was written to the store. A refused reload keeps the
        running list; ``undo`` (run off the event loop) then takes the write back."""
        loop = asyncio.get_running_loop()
        try:
            await self.rpc.call("dispatcher.reload", who=WHO)
        except RpcError as exc:
            if undo is None:
                raise RpcError(exc.code, f"{what}, but {exc.message}") from None
            undone = await loop.run_in_executor(None, undo)
            raise RpcError(exc.code, f"{exc.message}; {undone}") from None
        return f"{what} and reloaded."

    async def _store_add(self, body: dict[str, Any]) -> str:
        """Write a destination to the store (list file or table) and reload."""
        values: dict[str, int] = {}
        for name, default in (("set", None), ("flags", 0), ("priority", 0)):
            value = body.get(name)
            if value in (None, "") and default is not None:
                value = default
            if isinstance(value, bool) or not isinstance(value, int):
                raise fault(ADD_FAILED, f"{name} must be an integer, not {value!r}")
            values[name] = value
        texts: dict[str, str] = {}
        for name in ("uri", "attrs", "description"):
            value = body.get(name) or ""
            if not isinstance(value, str):
                raise fault(ADD_FAILED, f"{name} must be text, not {value!r}")
            texts[name] = value.strip()
        if not texts["uri"]:
            raise fault(ADD_FAILED, "the URI is empty")
        store = self.target.dispatcher.store
        group, uri = values["set"], texts["uri"]
        loop = asyncio.get_running_loop()
        try:
            row_id = await loop.run_in_executor(
                None,
                lambda: store.add(
                    group, uri, values["flags"], values["priority"], texts["attrs"],
                    texts["description"],
                ),
            )  # fmt: skip
        except (DispatcherError, StoreError) as exc:
            raise fault(ADD_FAILED, f"{exc}; nothing was written") from None
        log.warning("console: set %d %s written to %s (id %d)", group, uri, store.location, row_id)

        def undo() -> str:
            for row in store.rows():
                if row.id == row_id and row.setid == group and row.destination.strip() == uri:
                    store.remove(row_id)
                    log.warning("console: set %d %s taken out of %s again", group, uri,
                                store.location)  # fmt: skip
                    return f"the new record was taken out of {store.location} again"
            return f"the new record is still in {store.location} (it changed meanwhile)"

        return await self._reload_after(f"Set {group} {uri} written to {store.location}", undo)

    async def _store_remove(self, group: object, uri: object) -> str:
        """Delete a destination from the store and reload; one the store does not have
        (added in memory by ``dispatcher.add``) is removed from memory."""
        if isinstance(group, bool) or not isinstance(group, int) or not isinstance(uri, str):
            raise fault(REMOVE_FAILED, "set (an integer) and uri (text) are needed")
        store = self.target.dispatcher.store

        def matching() -> list[int]:
            found = []
            for row in store.rows():
                try:
                    stored = parse_destination_uri(row.destination.strip())[0]
                except ParseError:
                    continue
                if row.setid == group and stored == uri:
                    found.append(row.id)
            return found

        def delete(ids: list[int]) -> int:
            # Highest first: a list file's line numbers after it do not move.
            return sum(store.remove(i) for i in sorted(ids, reverse=True))

        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(None, matching)
            if not ids:
                await self.rpc.call("dispatcher.remove", [group, uri], who=WHO)
                return (
                    f"Set {group} {uri} is not in {store.location}: removed from memory "
                    "(it was added there)."
                )
            removed = await loop.run_in_executor(None, delete, ids)
        except StoreError as exc:
            raise fault(REMOVE_FAILED, f"{exc}; nothing was removed") from None
        log.warning("console: set %d %s deleted from %s", group, uri, store.location)
        noun = "record" if removed == 1 else "records"
        return await self._reload_after(
            f"Set {group} {uri} deleted from {store.location} ({removed} {noun})", None
        )
