"""TLS contexts made from ``[tls]``: one for ``tls:`` listeners, one for destinations.

Built with the standard :mod:`ssl` module when the server starts (the configuration
itself opens no file). A file that cannot be loaded raises :class:`TlsFileError` naming
its ``[tls]`` key; the server turns it into a configuration error, so ``sipdispatch run``
stops with a one-line message and exit status 2.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

_VERSIONS: Final = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``[tls]`` (docs/configuration.md has each key)."""

    certificate: str = ""
    private_key: str = ""
    ca_file: str = ""
    verify_peer: bool = True
    verify_client: bool = False
    min_version: str = "TLSv1.2"


class TlsFileError(Exception):
    """A ``[tls]`` file that does not load; ``key`` is the key naming it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """What the shell needs to speak TLS."""

    server: ssl.SSLContext | None
    """For ``tls:`` listeners (None when the configuration has no certificate)."""
    client: ssl.SSLContext
    """For connections the proxy opens to TLS destinations."""
    verify_peer: bool
    """Destinations' certificates are checked (chain and host name)."""


def _error(key: str, path: str, exc: Exception) -> TlsFileError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return TlsFileError(f"tls.{key}", f"tls.{key} = {path!r}: cannot load it: {reason}")


def _load_chain(ctx: ssl.SSLContext, tls: TlsSettings) -> None:
    try:
        ctx.load_cert_chain(tls.certificate, tls.private_key or None)
    except (OSError, ssl.SSLError) as exc:
        # Which of the two files is at fault: the certificate when it alone fails.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(tls.certificate)
        except (OSError, ssl.SSLError):
            raise _error("certificate", tls.certificate, exc) from None
        if tls.private_key:
            raise _error("private_key", tls.private_key, exc) from None
        raise _error("certificate", tls.certificate, exc) from None


def _load_cas(ctx: ssl.SSLContext, tls: TlsSettings) -> None:
    if not tls.ca_file:
        ctx.load_default_certs()
        return
    try:
        ctx.load_verify_locations(tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _error("ca_file", tls.ca_file, exc) from None


def make_contexts(tls: TlsSettings) -> TlsContexts:
    """The contexts of ``tls``; raises TlsFileError for a file that does not load."""
    version = _VERSIONS[tls.min_version]
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = version
    if tls.verify_peer:
        _load_cas(client, tls)
    else:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    server: ssl.SSLContext | None = None
    if tls.certificate:
        _load_chain(client, tls)  # shown to destinations that ask for one
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = version
        _load_chain(server, tls)
        if tls.verify_client:
            server.verify_mode = ssl.CERT_REQUIRED
            if tls.ca_file:
                try:
                    server.load_verify_locations(tls.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise _error("ca_file", tls.ca_file, exc) from None
            else:
                server.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return TlsContexts(server, client, tls.verify_peer)
