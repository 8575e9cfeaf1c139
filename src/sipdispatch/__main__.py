"""``python -m sipdispatch`` is the ``sipdispatch`` command."""

from sipdispatch.cli import main

raise SystemExit(main())
