"""``stats.get_statistics``: the proxy's counters in Kamailio's ``group:name = value`` shape.

Kamailio's names where one means the same (``core:rcv_requests``, ``core:fwd_requests``,
``tmx:active_transactions``, ...), ``dispatcher:`` for the dispatcher's own. Read from
the same counters as the metrics, when asked.
"""

from __future__ import annotations

from sipdispatch.admin.protocol import AdminTarget

Statistic = tuple[str, str, int]
"""(group, name, value)."""


def statistics(target: AdminTarget) -> list[Statistic]:
    """Every statistic, by group."""
    out: list[Statistic] = []
    traffic = target.traffic()
    if traffic is not None:
        p = traffic.proxy
        out += [
            ("core", "rcv_requests", p.rx_requests),
            ("core", "rcv_replies", p.rx_replies),
            ("core", "fwd_requests", p.tx_requests),
            ("core", "fwd_replies", p.relayed_2xx + p.tx_replies_stateless),
            ("core", "drop_requests", p.dropped),
            ("core", "err_requests", p.parse_errors),
            ("core", "bad_msg_hdr", p.parse_errors),
        ]
        out += [
            ("core", f"rcv_requests_{method.lower()}", count)
            for method, count in sorted(p.requests_by_method.items())
        ]
        out += [("sl", f"{code}_replies", count) for code, count in sorted(p.replies_sent.items())]
        out += [
            ("tmx", "active_transactions", traffic.server_transactions),
            ("tmx", "UAC_transactions", traffic.client_transactions),
            ("tmx", "rpl_sent", sum(p.replies_sent.values()) + p.relayed_2xx),
        ]
    router = target.dispatcher.router
    dests = list(router.sets.destinations())
    rejected = [sum(d.calls_rejected[i] for d in dests) for i in range(4)]
    out += [
        ("dispatcher", "sets", len(router.sets)),
        ("dispatcher", "destinations", len(dests)),
        ("dispatcher", "destinations_usable", sum(1 for d in dests if d.is_usable())),
        ("dispatcher", "calls_in_progress", sum(d.dlg_load for d in dests)),
        ("dispatcher", "calls_answered", sum(d.calls_answered for d in dests)),
        *(("dispatcher", f"calls_rejected_{i + 3}xx", n) for i, n in enumerate(rejected)),
        ("dispatcher", "calls_timeout", sum(d.calls_timeout for d in dests)),
        ("dispatcher", "calls_cancelled", sum(d.calls_cancelled for d in dests)),
        ("dispatcher", "calls_no_destination", sum(router.no_destination.values())),
        ("dispatcher", "failovers", traffic.proxy.failovers if traffic is not None else 0),
        ("dispatcher", "state_changes", target.state_log.changes),
        ("dispatcher", "reloads", sum(target.dispatcher.reloads.values())),
    ]
    return out


def select(stats: list[Statistic], names: list[str]) -> list[str]:
    """Kamailio's ``stats.get_statistics`` result for ``names``: ``all``, a group
    (``core:``) or a statistic (``rcv_requests`` or ``core:rcv_requests``); each
    ``group:name = value``."""
    wanted = names or ["all"]
    lines: list[str] = []
    for group, name, value in stats:
        full = f"{group}:{name}"
        for w in wanted:
            if w == "all" or w == f"{group}:" or w in (name, full):
                lines.append(f"{full} = {value}")
                break
    return lines
