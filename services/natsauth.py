"""NATS users for the embedded stack: one per service role, with least-privilege subject permissions,
and an `admin` for people and tests (the NATS CLI, benchmarks, the chaos checker).

`make run` writes random passwords once into `.data/nats/users.json` and the server's
`authorization` block into `.data/nats/auth.conf`, both owner-only. Services get their user in
`MODALMESH_NATS_URL` (`nats://<role>:<password>@host:port`). Nothing has a default password, and a
connection without one is refused.

Each role may publish and subscribe only the application subjects its job needs (`contracts.subjects`).
JetStream's own API (`$JS.API.>`, acks, flow control) is open to every role, because every service
runs the same idempotent bootstrap; what a role may write into a KV bucket or the object store is
limited to its own bucket.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from contracts import subjects

INBOX = "_INBOX.>"
JETSTREAM = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>"]


@dataclass(frozen=True)
class Role:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    kv_write: tuple[str, ...] = ()  # buckets this role puts into
    objects: tuple[str, ...] = ()  # object stores this role writes files into

    def permissions(self) -> dict[str, dict[str, list[str]]]:
        publish = [
            *self.publish,
            *JETSTREAM,
            *(f"$KV.{b}.>" for b in self.kv_write),
            *(f"$O.{o}.>" for o in self.objects),
        ]
        return {"publish": {"allow": publish}, "subscribe": {"allow": [*self.subscribe, INBOX]}}


ROLES: dict[str, Role] = {
    "gateway": Role(
        publish=("req.>", "cancel.>", "control.>", subjects.USAGE_ALL),  # control: the admin API's unload, drain
        subscribe=("out.>", "worker.status.>", "telemetry.>", subjects.QUEUE_REPORTS_ALL),
        kv_write=("tasks", "placement", "keys", "rates", "quotas", "cache"),
    ),  # placement: the admin API's overrides; keys: its API keys; rates, quotas: the per-key counters; cache: answers
    # req: re-queueing work a worker handed back; INBOX: replies.
    "scheduler": Role(
        publish=("req.>", "assign.>", "result.>", "alert.>", "dead.>", "control.>", subjects.QUEUE_REPORTS_ALL, INBOX),
        subscribe=("worker.status.>", "telemetry.>", "cancel.>", "$JS.EVENT.ADVISORY.CONSUMER.>", subjects.GIVEBACK),
        kv_write=("models",),
    ),  # the catalog file's entries
    "worker": Role(
        publish=("result.>", "worker.status.>", subjects.GIVEBACK),
        subscribe=("cancel.>", "control.>"),
        kv_write=("models",),
        objects=("artifacts",),
    ),
    "aggregator": Role(publish=("out.>",), kv_write=("tasks",)),
    "monitor": Role(publish=("telemetry.>", "alert.>"), kv_write=("nodes",)),
}
ADMIN = "admin"


@dataclass
class NatsUsers:
    """The users of one data folder: passwords made once, kept owner-only, reused on every start."""

    folder: Path
    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, folder: Path) -> NatsUsers:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stored = folder / "users.json"
        passwords = json.loads(stored.read_text()) if stored.exists() else {}
        for user in (ADMIN, *ROLES):
            passwords.setdefault(user, secrets.token_urlsafe(24))
        _write_private(stored, json.dumps(passwords, indent=1))
        users = cls(folder, passwords)
        _write_private(users.conf_path, users.server_conf())
        return users

    @classmethod
    def load(cls, folder: Path) -> NatsUsers:
        """The users a launcher already made, read only (for tests and tools that connect as admin)."""
        return cls(folder, json.loads((folder / "users.json").read_text()))

    @property
    def conf_path(self) -> Path:
        return self.folder / "auth.conf"

    def server_conf(self) -> str:
        """nats-server's `authorization` block (JSON is valid NATS config)."""
        users: list[dict[str, object]] = [{"user": ADMIN, "password": self.passwords[ADMIN]}]
        users += [
            {"user": role, "password": self.passwords[role], "permissions": spec.permissions()}
            for role, spec in ROLES.items()
        ]
        return "authorization " + json.dumps({"users": users}, indent=1) + "\n"

    def url(self, user: str, host: str, port: int) -> str:
        return f"nats://{quote(user)}:{quote(self.passwords[user], safe='')}@{host}:{port}"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, never briefly readable by others."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def password_variable(user: str) -> str:
    """The environment variable that holds `user`'s password in docker compose (`.env`)."""
    return f"NATS_{user.upper()}_PASSWORD"


def compose_conf() -> str:
    """The same users and permissions for the compose file's nats-server, with each password read
    from the server's environment (`password: $NATS_<ROLE>_PASSWORD`), so no secret is in the repo.
    `deploy/compose/nats/auth.conf` is this, and a test keeps it so."""
    users: list[dict[str, object]] = [{"user": ADMIN, "password": "$" + password_variable(ADMIN)}]
    users += [
        {"user": role, "password": "$" + password_variable(role), "permissions": spec.permissions()}
        for role, spec in ROLES.items()
    ]
    text = "authorization " + json.dumps({"users": users}, indent=1) + "\n"
    unquoted = re.sub(r'"(\$NATS_[A-Z_]+_PASSWORD)"', r"\1", text)  # a quoted $VAR would be taken literally
    return "# Generated by `python -m services.natsauth compose`: do not edit.\n" + unquoted


if __name__ == "__main__":
    if sys.argv[1:] != ["compose"]:
        sys.exit("usage: python -m services.natsauth compose   (prints deploy/compose/nats/auth.conf)")
    sys.stdout.write(compose_conf())
