"""Destination events through ``sipdispatch run`` on loopback: a gateway stops answering
pings, and the proxy tells it (Kamailio's ``dispatcher:dst-down``) to a Python hook, a
command and a webhook; when it answers again, ``dispatcher:dst-up``. The command is a
real program that writes a file, the webhook a real HTTP server in this test, the hook
a module next to the configuration file."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import GatewayFactory, ProxyFactory
from .gateway import wait_until
from .proxyctl import basic_config, toml_str
from .sippctl import free_port

pytestmark = pytest.mark.timeout(180)

WAIT = 30.0
"""Generous deadline for what takes a few ping intervals."""


class Webhook:
    """An HTTP server on 127.0.0.1 that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with received.lock:
                    received.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dispatcher"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[tuple[str, str, str, str]]:
        with self.lock:
            return [(p["event"], p["uri"], p["old_state"], p["new_state"]) for p in self.posts]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("workers", [1, 2])
def test_gateway_that_stops_answering_pings_is_told_down_then_up_to_hook_command_and_webhook(
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    webhook: Webhook,
    workers: int,
) -> None:
    """With two worker processes too: each event once, by the worker that pinged."""
    mg1 = gateways("mg1", "udp")
    mg2 = gateways("mg2", "udp")
    workdir = tmp_path / "proxy"  # where the proxy's configuration file is written
    workdir.mkdir()
    told = tmp_path / "command.txt"
    hooked = tmp_path / "hook.txt"
    program = tmp_path / "notify.sh"
    program.write_text(
        "#!/bin/sh\n"
        'printf "%s %s %s %s %s\\n" "$SIPDISPATCH_EVENT" "$SIPDISPATCH_SET" "$SIPDISPATCH_URI"'
        ' "$SIPDISPATCH_OLD_STATE" "$SIPDISPATCH_NEW_STATE" >> "$1"\n'
        'echo "notified $SIPDISPATCH_EVENT"\n'
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    (workdir / "nms.py").write_text(
        f"PATH = {str(hooked)!r}\n"
        "def tell(event):\n"
        "    with open(PATH, 'a') as out:\n"
        "        out.write(f'{event.route} {event.uri} {event.code} {event.origin}\\n')\n"
    )
    port, admin = free_port(), free_port()
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(f"1 {mg1.uri} 0 0 duid=mg1\n1 {mg2.uri} 0 0\n")
    toml = basic_config(port, admin, list_file, ping_interval=1, fr_timer=2000)
    if workers > 1:
        toml = toml.replace("record_route = true\n", f"record_route = true\nworkers = {workers}\n")
    toml = toml.replace(
        "ping_interval = 1\n",
        "ping_interval = 1\nprobing_mode = 1\nprobing_threshold = 2\ninactive_threshold = 2\n",
        1,
    )
    toml += (
        "\n[events]\n"
        'on_destination_down = "nms:tell"\n'
        'on_destination_up = "nms:tell"\n'
        f"command = [{toml_str(str(program))}, {toml_str(str(told))}]\n"
        f"webhook = {toml_str(webhook.url)}\n"
    )
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    if workers > 1:
        assert "w1: " in proxy.log_text()
    wait_until(lambda: f"set 1 {mg1.uri}: AX -> AP" in proxy.log_text(), WAIT, "mg1 AP")
    # Coming up from AX is no event: it was never down.
    assert lines(told) == [] and webhook.events() == [] and lines(hooked) == []

    mg1.set_behaviour(options_code=None)
    wait_until(lambda: len(lines(told)) == 1 and len(webhook.events()) == 1, WAIT, "dst-down")
    wait_until(lambda: len(lines(hooked)) == 1, WAIT, "the hook's dst-down")
    assert lines(told) == [f"dst-down 1 {mg1.uri} TP IP"]
    assert webhook.events() == [("dst-down", mg1.uri, "TP", "IP")]
    (post,) = webhook.posts
    assert post["set"] == 1 and post["duid"] == "mg1" and post["code"] == 408
    assert post["origin"] == "probe" and abs(post["time"] - time.time()) < 120
    assert lines(hooked) == [f"dispatcher:dst-down {mg1.uri} 408 probe"]
    assert "notified dst-down" in proxy.log_text()

    mg1.set_behaviour(options_code=200)
    wait_until(lambda: len(lines(told)) == 2 and len(webhook.events()) == 2, WAIT, "dst-up")
    wait_until(lambda: len(lines(hooked)) == 2, WAIT, "the hook's dst-up")
    assert lines(told)[1] == f"dst-up 1 {mg1.uri} IP AP"
    assert webhook.events()[1] == ("dst-up", mg1.uri, "IP", "AP")
    assert lines(hooked)[1] == f"dispatcher:dst-up {mg1.uri} 200 probe"
    # mg2 answered all along: nothing was raised for it; and nothing twice.
    assert all(e[1] == mg1.uri for e in webhook.events())
    assert len(lines(told)) == len(webhook.events()) == len(lines(hooked)) == 2
