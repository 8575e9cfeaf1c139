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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from aiohttp import web

from sipdispatch import __version__
from sipdispatch.admin.protocol import AdminTarget
from sipdispatch.admin.rpc import LIST_FULL, Rpc, RpcError, list_sets
from sipdispatch.config.values import is_loopback
from sipdispatch.dispatcher.destination import Destination

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
HISTORY: Final = 120
"""Latency samples kept per destination (one per second at most)."""
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

ACTIONS: Final = ("drain", "enable", "reload", "add", "remove")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _asset(name: str) -> str:
    return resources.files("sipdispatch.admin").joinpath("static", name).read_text("utf-8")


@dataclass
class _Sample:
    """What the console remembers of one destination between two snapshots."""

    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    dispatched: int = 0
    cps: float = 0.0


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
        self._samples: dict[tuple[int, str], _Sample] = {}
        self._sampled_at: float | None = None
        self._streams: set[asyncio.Event] = set()
        self._closing = False

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
        form = await request.post()
        given = form.get("token", "")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.strip().encode("utf-8"), self._token
        ):
            log.warning("console login refused: wrong token from %s", request.remote)
            return self._login_html("Wrong token.", status=401)
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
            while not self._closing:
                data = json.dumps(await self.snapshot(), ensure_ascii=False)
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

    def _sample(self, dests: list[Destination]) -> None:
        """Once a second at most: each destination's latency estimate and calls per
        second since the last sample."""
        now = self.target.now()
        last = self._sampled_at
        if last is not None and now - last < TICK * 0.9:
            return
        self._sampled_at = now
        seen: set[tuple[int, str]] = set()
        for dest in dests:
            key = (dest.setid, dest.uri)
            if key in seen:
                continue
            seen.add(key)
            sample = self._samples.get(key)
            if sample is None:
                sample = self._samples[key] = _Sample(dispatched=dest.dispatched)
            elif last is not None and now > last:
                sample.cps = max(0, dest.dispatched - sample.dispatched) / (now - last)
                sample.dispatched = dest.dispatched
            stats = dest.latency
            sample.history.append(round(stats.estimate, 1) if stats.count else None)
        for key in [k for k in self._samples if k not in seen]:
            del self._samples[key]

    async def snapshot(self) -> dict[str, Any]:
        """What the page shows, as JSON."""
        target = self.target
        router = target.dispatcher.router
        now = target.now()
        router.expire_calls(now)
        sets = router.sets
        listing = list_sets(sets, LIST_FULL, latency=True, runtime=True)
        dests = [dest for dset in sets for dest in dset.dests]
        self._sample(dests)
        in_progress: dict[int, int] = {}
        traffic = target.traffic()
        for handle in traffic.branch_handles if traffic is not None else ():
            if isinstance(handle, Destination):
                in_progress[id(handle)] = in_progress.get(id(handle), 0) + 1
        out_sets: list[dict[str, Any]] = []
        for dset, record in zip(sets, listing["RECORDS"], strict=True):
            rows: list[dict[str, Any]] = []
            for dest, entry in zip(dset.dests, record["SET"]["TARGETS"], strict=True):
                listed = entry["DEST"]
                latency = listed["LATENCY"]
                sample = self._samples.get((dest.setid, dest.uri), _Sample())
                rows.append(
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
                        "history": list(sample.history),
                        "in_progress": in_progress.get(id(dest), 0),
                        "load": listed["RUNTIME"]["DLGLOAD"],
                        "dispatched": dest.dispatched,
                        "cps": round(sample.cps, 2),
                    }
                )
            out_sets.append({"id": record["SET"]["ID"], "dests": rows})
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
        }

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
        if action == "reload":
            return call("dispatcher.reload")
        if action == "add":
            flags = body.get("flags") or 0
            priority = body.get("priority") or 0
            attrs = body.get("attrs") or ""
            return call("dispatcher.add", group, uri, flags, priority, attrs)
        if action == "remove":
            return call("dispatcher.remove", group, uri)
        return None
