"""Several sipdispatch nodes acting as one load balancer, through Redis.

A shell component between the state log and Redis (docs/cluster.md): destination
state changes go out and come in (applied with origin ``cluster``, never sent back),
nodes announce themselves with heartbeats that expire, probing is split over the
live nodes by rendezvous hashing, algorithm 10's call load is kept in a Redis ledger,
and a reload on one node reloads all. Routing reads local state only.

Only :mod:`.node`, :mod:`.redisconn` (how the node reaches Redis: a URL, or the master
Redis Sentinel names) and :mod:`.ledger` import redis; the server imports them only when
``[cluster] redis_url`` or ``sentinels`` is set, so a standalone node does not even load
them.
"""
