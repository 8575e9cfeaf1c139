"""The integration fixtures (proxies, scripted gateways, sipp) for the workers' tests."""

from tests.integration.conftest import gateways, proxy_factory, sipp  # noqa: F401
