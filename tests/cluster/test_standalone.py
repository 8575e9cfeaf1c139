"""A standalone node (no ``[cluster] redis_url``) loads neither the cluster code nor redis."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.proxyctl import proxy_env


def test_a_standalone_server_does_not_import_redis_or_the_cluster() -> None:
    code = (
        "import sys, sipdispatch.server, sipdispatch.admin.http, sipdispatch.cli\n"
        "loaded = sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'redis' or m.startswith('sipdispatch.cluster.'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=proxy_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
