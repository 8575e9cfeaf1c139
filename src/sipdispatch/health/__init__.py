"""Destination health: the pure state machine (:mod:`.state`), the log every state
change goes through (:mod:`.statelog`) and the OPTIONS prober (:mod:`.prober`).
See docs/health.md."""
