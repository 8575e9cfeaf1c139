"""Algorithm 10's call load in Redis: one key per call, one sorted set per destination.

``{ns}:call:{Call-ID}`` holds the destination's load key and the node that counted
the call, with the call's timeout as its TTL (``hash_initexpire`` until answered,
then what is left of ``hash_expire``). ``{ns}:load:{set}:{key}`` is the set of the
destination's calls, each scored with its expiry time (Redis's clock), so the count
is ``ZCARD`` after dropping what expired: it cannot go below zero and a call that
never saw its BYE stops counting when its key would have expired. Reserving,
confirming and releasing are Lua scripts, so each is atomic across nodes; any node
can release a call (the BYE may reach another node than the INVITE did). A strict
reservation (the INVITE waits for it) adds nothing when the destination is full, so the
call can go elsewhere; a plain one counts the call whatever the count (it was sent).
A script that changes a count also publishes it (a ``load`` event on the cluster's
channel, when the ledger has one), so that costs no round trip of its own.
"""

from __future__ import annotations

from typing import Any, Final

from redis.asyncio import Redis

NO_TIMEOUT_MS: Final = 24 * 3600 * 1000
"""TTL of a call when ``hash_expire`` and ``hash_initexpire`` are both 0 (no timeout
locally): a day, so a Redis entry never outlives every node's memory of it forever."""

# KEYS[1] call key, KEYS[2] load set; ARGV: call-id, value, ttl ms, maxload, strict,
# channel, node, set, key. Returns {1 if the destination was below maxload (or no
# limit), count after}; strict ("1") and full: {0, count}, the call not added (and no
# longer counted elsewhere). The new count goes to the channel unless it is "".
_RESERVE: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[3])
local old = redis.call('GET', KEYS[1])
if old then
  local oldset = string.match(old, '^[^\\n]*')
  if oldset ~= KEYS[2] then
    redis.call('ZREM', oldset, ARGV[1])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local already = redis.call('ZSCORE', KEYS[2], ARGV[1])
local n = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[4])
local fits = 1
if not already and max > 0 and n >= max then
  if ARGV[5] == '1' then
    if old then redis.call('DEL', KEYS[1]) end
    return {0, n}
  end
  fits = 0
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
local count = redis.call('ZCARD', KEYS[2])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], cjson.encode({type = 'load', node = ARGV[7],
    set = tonumber(ARGV[8]), key = ARGV[9], n = count}))
end
return {fits, count}
"""

# KEYS[1] call key; ARGV: call-id, ttl ms. Returns 1 when the call was there.
_CONFIRM: Final = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local set = string.match(v, '^[^\\n]*')
redis.call('ZADD', set, 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] call key; ARGV: call-id, channel, node, load-set prefix. Returns {} when the
# call is not counted, else {load set, owner node, count after}. The new count goes to
# the channel unless it is "" (with the call's id when another node counted it).
_RELEASE: Final = """
local v = redis.call('GET', KEYS[1])
if not v then return {} end
local set = string.match(v, '^[^\\n]*')
local owner = string.sub(v, string.len(set) + 2)
redis.call('DEL', KEYS[1])
redis.call('ZREM', set, ARGV[1])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
local count = redis.call('ZCARD', set)
if ARGV[2] ~= '' and string.sub(set, 1, string.len(ARGV[4])) == ARGV[4] then
  local setid, key = string.match(string.sub(set, string.len(ARGV[4]) + 1), '^(%d+):(.*)$')
  if setid then
    local event = {type = 'load', node = ARGV[3], set = tonumber(setid), key = key, n = count}
    if owner ~= ARGV[3] then event['released'] = ARGV[1] end
    redis.call('PUBLISH', ARGV[2], cjson.encode(event))
  end
end
return {set, owner, count}
"""

# KEYS: load sets. Returns their counts after dropping expired calls.
_COUNT: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  out[i] = redis.call('ZCARD', key)
end
return out
"""


def ttl_ms(seconds: float) -> int:
    """A call's TTL for Redis: 0 (no timeout) becomes :data:`NO_TIMEOUT_MS`."""
    return max(int(seconds * 1000), 1) if seconds > 0 else NO_TIMEOUT_MS


class Ledger:
    """The call-load scripts over one Redis client and namespace."""

    def __init__(self, redis: Redis, namespace: str, node_id: str, channel: str = "") -> None:
        """``channel``: where the scripts publish each new count ("" = nowhere)."""
        self.redis = redis
        self.namespace = namespace
        self.node_id = node_id
        self.channel = channel
        self._reserve = redis.register_script(_RESERVE)
        self._confirm = redis.register_script(_CONFIRM)
        self._release = redis.register_script(_RELEASE)
        self._count = redis.register_script(_COUNT)

    def call_key(self, call_id: str) -> str:
        """The key of a call."""
        return f"{self.namespace}:call:{call_id}"

    def load_key(self, setid: int, key: str) -> str:
        """The sorted set of a destination's calls (its key: duid, else URI; any case)."""
        return f"{self.namespace}:load:{setid}:{key.lower()}"

    def parse_load_key(self, name: str) -> tuple[int, str] | None:
        """(set, key) of a load set's name, None when it is not one of ours."""
        prefix = f"{self.namespace}:load:"
        if not name.startswith(prefix):
            return None
        setid, sep, key = name[len(prefix) :].partition(":")
        if not sep or not setid.isdigit():
            return None
        return int(setid), key

    async def reserve(
        self, call_id: str, setid: int, key: str, maxload: int, ttl: float, strict: bool = False
    ) -> tuple[bool, int]:
        """Count ``call_id`` on the destination: (it fitted under ``maxload``, the
        destination's count now). Counted again on the same destination, a call is
        refreshed, not added twice; counted on another, it moves. ``strict``: a call
        that does not fit is not added (False, the count)."""
        load = self.load_key(setid, key)
        value = f"{load}\n{self.node_id}"
        args: list[str | int] = [call_id, value, ttl_ms(ttl), maxload, "1" if strict else "0"]
        args += [self.channel, self.node_id, setid, key.lower()]
        fits, count = await self._reserve(keys=[self.call_key(call_id), load], args=args)
        return bool(fits), int(count)

    async def confirm(self, call_id: str, ttl: float) -> bool:
        """The call was answered: it counts ``ttl`` more seconds. False if unknown."""
        return bool(await self._confirm(keys=[self.call_key(call_id)], args=[call_id, ttl_ms(ttl)]))

    async def release(self, call_id: str) -> tuple[int, str, str, int] | None:
        """Stop counting the call, whichever node counted it: (set, key, owner node,
        count now), or None when it was not counted."""
        args = [call_id, self.channel, self.node_id, f"{self.namespace}:load:"]
        result: Any = await self._release(keys=[self.call_key(call_id)], args=args)
        if not result:
            return None
        name, owner, count = (_text(result[0]), _text(result[1]), int(result[2]))
        parsed = self.parse_load_key(name)
        if parsed is None:
            return None
        return parsed[0], parsed[1], owner, count

    async def counts(self, dests: list[tuple[int, str]]) -> list[int]:
        """The count of each (set, key), expired calls dropped."""
        if not dests:
            return []
        result: Any = await self._count(keys=[self.load_key(s, k) for s, k in dests], args=[])
        return [int(n) for n in result]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
