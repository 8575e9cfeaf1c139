"""``[events]`` and ``[dispatcher] reload_delta``: what a file may say and the message
for what it may not."""

from __future__ import annotations

from typing import Any

import pytest

from sipdispatch.config import ConfigError, default_config, parse_config


def error_for(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


def test_events_tell_nothing_by_default() -> None:
    events = default_config().events
    assert not events.active and events.hooks == {}
    assert (events.mode, events.command, events.webhook) == (0, (), "")
    assert default_config().dispatcher.reload_delta == 0


def test_events_settings_are_read_as_written() -> None:
    events = parse_config(
        {
            "events": {
                "mode": 1,
                "on_destination_down": "nms:down",
                "command": ["/usr/local/bin/page", "--team", "voice"],
                "webhook": "https://alerts.example.net/sd",
                "hook_timeout": 1,
                "webhook_retries": 0,
            }
        }
    ).events
    assert events.active and events.hooks == {"events.on_destination_down": "nms:down"}
    assert events.command == ("/usr/local/bin/page", "--team", "voice")
    assert (events.mode, events.hook_timeout, events.webhook_retries) == (1, 1.0, 0)


@pytest.mark.parametrize(
    ("events", "key", "text"),
    [
        ({"mode": 3}, "events.mode", "must be 0, 1 or 2"),
        ({"command": "/bin/notify ops"}, "events.command", "must be an array of strings"),
        ({"command": [""]}, "events.command[0]", "the program is empty"),
        ({"command": ["/bin/x", 3]}, "events.command[1]", "must be an array of strings"),
        ({"webhook": "ftp://x/y"}, "events.webhook", "http:// or https:// URL"),
        ({"webhook": "http://"}, "events.webhook", "http:// or https:// URL"),
        ({"on_destination_up": "no colon"}, "events.on_destination_up", "module:function"),
        ({"command_concurrency": 0}, "events.command_concurrency", "1..64"),
        ({"hook_timeout": 0}, "events.hook_timeout", "> 0"),
        ({"on_down": "a:b"}, "events.on_down", "unknown key"),
    ],
)
def test_bad_events_settings_name_the_key(events: dict[str, Any], key: str, text: str) -> None:
    err = error_for({"events": events})
    assert err.key == key
    assert text in str(err), str(err)


def test_reload_delta_is_whole_seconds_from_zero() -> None:
    assert parse_config({"dispatcher": {"reload_delta": 5}}).dispatcher.reload_delta == 5
    assert error_for({"dispatcher": {"reload_delta": -1}}).key == "dispatcher.reload_delta"
