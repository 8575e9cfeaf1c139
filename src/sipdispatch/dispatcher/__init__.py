"""The dispatcher core: Kamailio ``dispatcher`` semantics, sans I/O.

Destinations and their attrs (:mod:`.destination`), ``dispatcher.list`` parsing
and resolution (:mod:`.listfile`), sets ordered as Kamailio orders them with
their weight tables (:mod:`.sets`), Kamailio's hash (:mod:`.hashing`), the
algorithms 0-15 and 114, 115 (:mod:`.algorithms`), call load accounting (:mod:`.callload`),
latency statistics and congestion control (:mod:`.latency`).

Nothing here does I/O, reads the clock or uses the global random state: time
comes in as ``now``, randomness from an injected :class:`random.Random`, host
resolution from an injected callable. See docs/dispatcher.md.
"""

from __future__ import annotations

from sipdispatch.dispatcher.algorithms import (
    EMPTY_SELECTION,
    REGISTRY,
    Algorithm,
    SelectContext,
    Selection,
    get_algorithm,
    select,
)
from sipdispatch.dispatcher.callload import CallLoadTable, LoadEntry
from sipdispatch.dispatcher.destination import Attrs, Destination, SocketAddr, parse_socket
from sipdispatch.dispatcher.errors import (
    AttrsError,
    DispatcherError,
    DispatcherLoadError,
    UnknownAlgorithmError,
)
from sipdispatch.dispatcher.hashing import ds_get_hash, hash_slot
from sipdispatch.dispatcher.latency import LatencyStats, alpha_from_permille
from sipdispatch.dispatcher.listfile import make_destination, parse_list, resolve_all
from sipdispatch.dispatcher.sets import DestinationSet, DispatcherSets, carry_runtime_state
from sipdispatch.dispatcher.states import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_NODNSARES_DST,
    DS_NOPING_DST,
    DS_PROBING_DST,
    DS_STATES_ALL,
    DS_TRYING_DST,
    flags_text,
    parse_state_letters,
)

__all__ = [
    "DS_DISABLED_DST",
    "DS_INACTIVE_DST",
    "DS_NODNSARES_DST",
    "DS_NOPING_DST",
    "DS_PROBING_DST",
    "DS_STATES_ALL",
    "DS_TRYING_DST",
    "EMPTY_SELECTION",
    "REGISTRY",
    "Algorithm",
    "Attrs",
    "AttrsError",
    "CallLoadTable",
    "Destination",
    "DestinationSet",
    "DispatcherError",
    "DispatcherLoadError",
    "DispatcherSets",
    "LatencyStats",
    "LoadEntry",
    "SelectContext",
    "Selection",
    "SocketAddr",
    "UnknownAlgorithmError",
    "alpha_from_permille",
    "carry_runtime_state",
    "ds_get_hash",
    "flags_text",
    "get_algorithm",
    "hash_slot",
    "make_destination",
    "parse_list",
    "parse_socket",
    "parse_state_letters",
    "resolve_all",
    "select",
]
