"""Write the seed corpus of fuzz/sip_core.py: every message vector of the tests
(tests/sip/vectors, RFC 4475-style, valid and invalid), each as one datagram from a
caller, plus a call's INVITE/200/ACK/BYE exchange as one input.

    python fuzz/seed_corpus.py DIR
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sip.vectors import INVALID, VALID  # noqa: E402


def seeds() -> list[bytes]:
    out = [b"\x00" + data for data in VALID.values()]
    out += [b"\x00" + vector.data for vector in INVALID.values()]
    out += [b"\x03" + data for data in list(VALID.values())[:10]]  # the stream path
    return out


def main() -> None:
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (target / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{len(seeds())} seeds in {target}")


if __name__ == "__main__":
    main()
