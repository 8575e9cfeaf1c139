"""sipdispatch: a SIP load balancer with Kamailio dispatcher semantics."""

__version__ = "0.1.0"


def core_build() -> str:
    """How the SIP core was installed: ``"compiled"`` (mypyc, see setup.py) or ``"pure Python"``."""
    from sipdispatch.sip import proxy

    return "compiled" if str(proxy.__file__).endswith((".so", ".pyd")) else "pure Python"
