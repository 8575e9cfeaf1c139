"""The admin HTTP listener (aiohttp): JSON-RPC 2.0 at ``POST /RPC``, Prometheus
metrics at ``GET /metrics``, a health check at ``GET /health``, the web console at
``GET /`` (:mod:`sipdispatch.admin.console`, which has its own login and session; the
Bearer token below is for /RPC and /metrics).

Thin on purpose: the methods live in :mod:`sipdispatch.admin.rpc`, the metrics
in :mod:`sipdispatch.admin.metrics`. What this module decides is HTTP: the
bearer token, status codes and content types.

Token: when ``[admin] token`` is set, every request must carry
``Authorization: Bearer <token>`` (the configuration refuses a listener off
loopback without one). Compared in constant time.

HTTP status of a JSON-RPC error, as Kamailio's jsonrpcs does: the fault code
when it is an HTTP status (our method failures are 500), 400 for a request
that is not JSON or not a JSON-RPC request, 500 otherwise. A success is 200; a
notification (no ``id``) gets 204 and no body.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sipdispatch.admin.console import Console
from sipdispatch.admin.figures import merge_metrics
from sipdispatch.admin.health import health
from sipdispatch.admin.metrics import build_registry
from sipdispatch.admin.protocol import AdminTarget
from sipdispatch.admin.rpc import INVALID_REQUEST, PARSE_ERROR, Rpc, RpcError, error_response
from sipdispatch.checks import bind_reason

log = logging.getLogger("sipdispatch.admin")

RPC_PATH: Final = "/RPC"
"""Kamailio's xhttp/jsonrpcs convention (``jsonrpc_dispatch()`` on ``/RPC``)."""
METRICS_PATH: Final = "/metrics"
"""Prometheus' default scrape path."""
HEALTH_PATH: Final = "/health"
"""The health check (no token needed: it says only whether calls can be taken)."""
MAX_REQUEST_BYTES: Final = 1 << 20
"""Largest request body accepted (1 MiB); an RPC call is a few hundred bytes."""
JSON_TYPE: Final = "application/json"
UNAUTHORIZED: Final = 401


def _http_status(response: dict[str, Any]) -> int:
    error = response.get("error")
    if not isinstance(error, dict):
        return 200
    code = error.get("code")
    if isinstance(code, int) and 100 < code < 600:
        return code
    if code in (PARSE_ERROR, INVALID_REQUEST):
        return 400
    return 500


def _json(response: dict[str, Any], status: int | None = None) -> web.Response:
    return web.Response(
        status=_http_status(response) if status is None else status,
        text=json.dumps(response, ensure_ascii=False),
        content_type=JSON_TYPE,
    )


class AdminServer:
    """The admin listener of one running proxy."""

    def __init__(self, target: AdminTarget) -> None:
        self.target = target
        admin = target.config.admin
        self.host = admin.host
        self.port = admin.port
        self._token = admin.token.encode("utf-8")
        self.rpc = Rpc(target)
        """The RPC methods, and the count of their calls."""

        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        self.app.router.add_post(RPC_PATH, self._rpc)
        self.app.router.add_get(METRICS_PATH, self._metrics)
        self.app.router.add_get(HEALTH_PATH, self._health)
        self.console = Console(target, self.rpc)
        """The web console (its routes are absent when ``admin.console`` is off)."""
        self.console.add_routes(self.app)
        self.registry = build_registry(target, self.rpc, self.console.logins)
        """The Prometheus registry served at ``/metrics`` (one per server)."""
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the listener (the port once bound, if it was 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve. Raises OSError naming ``admin.listen`` when it cannot bind."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot listen on admin.listen {self.url}: {bind_reason(exc)}"
            ) from exc
        self._runner = runner
        if self.port == 0 and runner.addresses:  # port 0 (tests): the one the kernel chose
            self.port = int(runner.addresses[0][1])
        log.info("admin JSON-RPC at %s%s, metrics at %s%s", self.url, RPC_PATH, self.url,
                 METRICS_PATH)  # fmt: skip
        if self.console.mode != "off":
            log.info("web console (%s) at %s/", self.console.mode, self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        self.console.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- requests ----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> str | None:
        """None when the request may proceed, else why not."""
        if not self._token:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if not header:
            return "this admin listener requires 'Authorization: Bearer <token>'"
        if scheme.lower() != "bearer":
            return f"expected a Bearer token, got {scheme or 'nothing'}"
        if not hmac.compare_digest(credentials.strip().encode("utf-8"), self._token):
            return "wrong token"
        return None

    def _refuse(self, why: str, *, rpc: bool) -> web.Response:
        log.warning("admin request refused: %s", why)
        headers = {"WWW-Authenticate": 'Bearer realm="sipdispatch"'}
        if rpc:
            body = error_response(RpcError(UNAUTHORIZED, f"Unauthorized: {why}"))
            return web.Response(
                status=UNAUTHORIZED,
                text=json.dumps(body),
                content_type=JSON_TYPE,
                headers=headers,
            )
        return web.Response(status=UNAUTHORIZED, text=f"Unauthorized: {why}\n", headers=headers)

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        why = self._authorized(request)
        if why is not None:
            return self._refuse(why, rpc=True)
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _json(error_response(RpcError(PARSE_ERROR, f"Parse Error: {exc}")))
        response = await self.rpc.handle_payload(payload)
        if response is None:
            return web.Response(status=204)
        return _json(response)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        why = self._authorized(request)
        if why is not None:
            return self._refuse(why, rpc=False)
        # Collected here, on the event loop, so that the proxy's tables are read
        # between two packets: a consistent snapshot and no locking on the hot path.
        body = generate_latest(self.registry)
        others = await self.target.gather("metrics")
        if others:  # several workers: the whole proxy's
            texts = [str(o["data"]) for o in others if o.get("ok")]
            body = merge_metrics(body.decode(), texts)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _health(self, request: web.Request) -> web.StreamResponse:
        # No token: a load balancer's or orchestrator's probe rarely carries one, and the
        # answer tells no more than whether the proxy takes calls.
        status, summary = health(self.target)
        return web.Response(status=status, text=json.dumps(summary) + "\n", content_type=JSON_TYPE)
