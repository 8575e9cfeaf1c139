"""The operator's interface of a running proxy: JSON-RPC 2.0 and Prometheus metrics over
HTTP (``http``, ``rpc``, ``metrics``), and the client side used by the command line
(``client``). See docs/admin.md."""

TOKEN_ENV = "SIPDISPATCH_TOKEN"
"""Environment variable the command line reads the admin token from (safer than
``--token`` on the command line, which other users can see in the process list)."""
