"""`python -m services.compose_env [PATH]`: the `.env` of deploy/compose for a new operator, every
secret `.env.example` names filled with a fresh random value, the rest as the example has them.

Written owner-only (0600) and never over an existing file: secrets already in use stay as they are.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose"
SECRET = re.compile(r"PASSWORD|SECRET|API_KEY")
ASSIGNMENT = re.compile(r"^(\w+)=(.*)$")


def env_text(example: str) -> str:
    """The example with each secret variable given a random value; passwords go into NATS URLs, so
    the values are hex (URL-safe)."""
    lines = []
    for line in example.splitlines():
        match = ASSIGNMENT.match(line)
        if match and SECRET.search(match.group(1)):
            line = f"{match.group(1)}={secrets.token_hex(24)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_env(path: Path, example: Path = COMPOSE / ".env.example") -> None:
    """Create `path` owner-only; FileExistsError when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(env_text(example.read_text()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else COMPOSE / ".env"
    try:
        write_env(path)
    except FileExistsError:
        print(f"{path} exists: kept as it is (delete it first to make new secrets)", file=sys.stderr)
        return 1
    print(f"wrote {path} (owner-only) with new secrets; next:")
    print("  docker compose -f deploy/compose/docker-compose.yml up -d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
