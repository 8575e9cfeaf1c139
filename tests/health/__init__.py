"""Tests of destination health: state machine, prober, latency."""
