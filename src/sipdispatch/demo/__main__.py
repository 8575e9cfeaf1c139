"""``python -m sipdispatch.demo``: the same as ``sipdispatch demo``."""

from sipdispatch.demo.cli import main

if __name__ == "__main__":  # pragma: no cover - python -m sipdispatch.demo
    raise SystemExit(main())
