"""`python -m services.doctor [options]`: the same as `modalmesh doctor [options]`."""

from __future__ import annotations

import sys

from services.doctor.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["doctor", *sys.argv[1:]]))
