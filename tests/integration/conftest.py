"""Fixtures for loopback integration tests: scripted gateways, sipp, the proxy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from .gateway import Behaviour, GatewayThread, Transport
from .proxyctl import ProxyProcess, start_proxy
from .sippctl import sipp_path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: real sockets on 127.0.0.1 (scripted gateways, sipp, proxy)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def in_ci() -> bool:
    """True when the CI environment variable is set to anything but a false value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def sipp() -> str:
    """Path of sipp. Skips the test without it, except on CI (CI set) where it fails."""
    path = sipp_path()
    if path is None:
        if in_ci():
            pytest.fail("sipp is not on PATH and CI is set: install sip-tester")
        pytest.skip("sipp is not on PATH (apt-get install sip-tester)")
    return path


class GatewayFactory(Protocol):
    def __call__(
        self,
        name: str,
        transport: Transport = ...,
        port: int = ...,
        behaviour: Behaviour | None = ...,
        **behaviour_fields: Any,
    ) -> GatewayThread: ...


@pytest.fixture
def gateways() -> Iterator[GatewayFactory]:
    """Start scripted gateways: ``gw = gateways("gw1", "udp", reject=404)``; all stopped after."""
    started: list[GatewayThread] = []

    def make(
        name: str,
        transport: Transport = "udp",
        port: int = 0,
        behaviour: Behaviour | None = None,
        **behaviour_fields: Any,
    ) -> GatewayThread:
        gw = GatewayThread(name, transport, port, behaviour, **behaviour_fields)
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in reversed(started):
        gw.stop()


ProxyFactory = Callable[..., ProxyProcess]


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[ProxyFactory]:
    """Start the proxy from a TOML text and wait for ``sipdispatch ready`` on stderr.

    ``proxy = proxy_factory(toml_text, port=sip_port, admin_port=None,
    name="proxy", expect_clean_exit=False)``; the caller picks the ports (see
    ``sippctl.free_port``) and writes them into the TOML (``proxyctl.basic_config``).
    Every proxy is stopped (SIGTERM, then SIGKILL after 10 s) at teardown.
    """
    started: list[ProxyProcess] = []

    def make(
        config_toml: str,
        *,
        port: int,
        admin_port: int | None = None,
        name: str = "proxy",
        expect_clean_exit: bool = False,
        file_limit: int | None = None,
    ) -> ProxyProcess:
        proxy = start_proxy(
            config_toml,
            tmp_path / name,
            port=port,
            admin_port=admin_port,
            name=name,
            expect_clean_exit=expect_clean_exit,
            file_limit=file_limit,
        )
        started.append(proxy)
        return proxy

    yield make
    errors: list[str] = []
    for proxy in reversed(started):
        try:
            proxy.stop()
        except AssertionError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("\n".join(errors))


# -- a browser for the web console -------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
BROWSER_WAIT_MS = 30_000
"""Playwright's default deadline (ms): what takes a few ping intervals on a loaded machine."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a browser Playwright
    downloads)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        if in_ci():
            pytest.fail(f"{CHROMIUM} is missing and CI is set: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own cookies) in a 1280x800 window; fails the test if the page
    had a script error or a refused resource."""
    import re

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(BROWSER_WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    # A script error or a refused resource (CSP) shows in the browser's console; the
    # refusals the tests ask for (login, its limit, CSRF, a refused reload) are expected.
    assert [e for e in errors if not re.search(r"status of (401|403|422|429) ", e)] == []
