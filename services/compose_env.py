"""`python -m services.compose_env [PATH]`: the `.env` of deploy/compose for a new operator, every
secret `.env.example` names filled with a fresh random value, the rest as the example has them.

Written owner-only (0600) and never over an existing file: secrets already in use stay as they are.
Two things are taken from the machine: a base image that is not here while its local stand-in is
(deploy/docker/local/base.sh built it: no registry answers), and the CA bundle pip is told to trust
(a proxy that re-signs TLS), for builds.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose"
SECRET = re.compile(r"PASSWORD|SECRET|API_KEY")
ASSIGNMENT = re.compile(r"^(\w+)=(.*)$")
# The variable naming each base image, and the stand-in deploy/docker/local/base.sh builds for it.
STAND_INS = {
    "PYTHON_IMAGE": "modalmesh-local/python:3.11-slim",
    "NODE_IMAGE": "modalmesh-local/node:22",
    "NATS_IMAGE": "modalmesh-local/nats:2",
    "PROMETHEUS_IMAGE": "modalmesh-local/prometheus:2",
}
CA_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def env_text(example: str, values: Mapping[str, str] | None = None) -> str:
    """The example with each secret variable given a random value (hex: passwords go into NATS URLs)
    and the variables in `values` set to theirs."""
    lines = []
    for line in example.splitlines():
        match = ASSIGNMENT.match(line)
        if match and values and match.group(1) in values:
            line = f"{match.group(1)}={values[match.group(1)]}"
        elif match and SECRET.search(match.group(1)):
            line = f"{match.group(1)}={secrets.token_hex(24)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def docker_has(image: str) -> bool:
    if shutil.which("docker") is None:
        return False
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False, timeout=30)
    return found.returncode == 0


def machine_values(
    example: str, has_image: Callable[[str], bool] = docker_has, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The image variables whose public image is missing here while its stand-in is present, and
    BUILD_CA_FILE from the bundle pip trusts, when one is configured."""
    defaults = {m.group(1): m.group(2) for m in map(ASSIGNMENT.match, example.splitlines()) if m}
    values = {
        name: stand_in
        for name, stand_in in STAND_INS.items()
        if has_image(stand_in) and not has_image(defaults.get(name, ""))
    }
    bundle = ca_bundle(environ)
    if bundle is not None:
        values["BUILD_CA_FILE"] = bundle
    return values


def ca_bundle(environ: Mapping[str, str] = os.environ) -> str | None:
    """The CA bundle pip is told to trust here, if one is configured and exists."""
    return next((environ[v] for v in CA_VARIABLES if environ.get(v) and Path(environ[v]).is_file()), None)


def write_env(path: Path, example: Path = COMPOSE / ".env.example", values: Mapping[str, str] | None = None) -> None:
    """Create `path` owner-only; FileExistsError when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(env_text(example.read_text(), values))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else COMPOSE / ".env"
    example = COMPOSE / ".env.example"
    try:
        # Asking docker about images takes a moment: not when the file is there already.
        values = {} if path.exists() else machine_values(example.read_text())
        write_env(path, example, values)
    except FileExistsError:
        print(f"{path} exists: kept as it is (delete it first to make new secrets)", file=sys.stderr)
        return 1
    print(f"wrote {path} (owner-only) with new secrets")
    for name, value in values.items():
        print(f"  {name}={value} (found on this machine)")
    print("next: docker compose -f deploy/compose/docker-compose.yml up -d --wait")
    return 0


if __name__ == "__main__":
    sys.exit(main())
