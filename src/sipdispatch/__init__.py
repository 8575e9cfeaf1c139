"""sipdispatch: a SIP load balancer with Kamailio dispatcher semantics."""

__version__ = "0.1.0"
