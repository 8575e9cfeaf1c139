"""The client side: kamcmd-style parameters and output, and unreachable proxies."""

from __future__ import annotations

import socket

import pytest

from sipdispatch.admin.client import (
    AdminUnreachable,
    admin_url,
    call,
    convert_param,
    error_line,
    format_result,
    normalise_url,
)
from sipdispatch.config import AdminConfig


def test_parameters_are_numbers_when_they_look_like_numbers() -> None:
    assert convert_param("4") == 4
    assert convert_param("-12") == -12
    assert convert_param("0.5") == 0.5
    assert convert_param("sip:mg1:5060") == "sip:mg1:5060"
    assert convert_param("10.0.0.1") == "10.0.0.1"
    assert convert_param("dx") == "dx"
    assert convert_param("s:1234") == "1234"  # kamcmd's s: prefix forces text


def test_urls() -> None:
    assert normalise_url("127.0.0.1:5080") == "http://127.0.0.1:5080"
    assert normalise_url("http://127.0.0.1:5080/RPC/") == "http://127.0.0.1:5080"
    assert admin_url(AdminConfig("0.0.0.0", 5080, "t")) == "http://127.0.0.1:5080"
    assert admin_url(AdminConfig("::1", 5080)) == "http://[::1]:5080"


def test_format_is_kamcmds() -> None:
    result = {
        "NRSETS": 1,
        "RECORDS": [
            {
                "SET": {
                    "ID": 1,
                    "TARGETS": [
                        {
                            "DEST": {
                                "URI": "sip:192.168.0.1:5060",
                                "FLAGS": "AP",
                                "PRIORITY": 12,
                                "LATENCY": {"AVG": 20.104, "MAX": 53},
                            }
                        },
                    ],
                }
            }
        ],
    }
    assert format_result(result) == "\n".join(
        [
            "{",
            "\tNRSETS: 1",
            "\tRECORDS: {",
            "\t\tSET: {",
            "\t\t\tID: 1",
            "\t\t\tTARGETS: {",
            "\t\t\t\tDEST: {",
            "\t\t\t\t\tURI: sip:192.168.0.1:5060",
            "\t\t\t\t\tFLAGS: AP",
            "\t\t\t\t\tPRIORITY: 12",
            "\t\t\t\t\tLATENCY: {",
            "\t\t\t\t\t\tAVG: 20.104000",
            "\t\t\t\t\t\tMAX: 53",
            "\t\t\t\t\t}",
            "\t\t\t\t}",
            "\t\t\t}",
            "\t\t}",
            "\t}",
            "}",
        ]
    )
    assert format_result("Ok. Dispatcher successfully reloaded.") == (
        "Ok. Dispatcher successfully reloaded."
    )
    assert format_result(["core.version", "core.uptime"]) == "core.version\ncore.uptime"
    assert format_result({"DUID": None}) == "{\n\tDUID:\n}"


def test_error_line_is_kamcmds() -> None:
    assert error_line({"code": 500, "message": "Reload Failed"}) == "error: 500 - Reload Failed"


def test_proxy_not_running() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AdminUnreachable) as info:
        call(f"http://127.0.0.1:{port}", "core.version", [])
    assert str(info.value) == f"proxy not running at http://127.0.0.1:{port} (connection refused)"


def test_something_else_listening() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # Nothing ever answers: the call times out with a clear line.
        with pytest.raises(AdminUnreachable) as info:
            call(f"127.0.0.1:{port}", "core.version", [], timeout=0.5)
    assert "did not answer within 0.5s" in str(info.value)
