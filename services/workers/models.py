"""`python -m services.workers.models`: get model weights onto this node and check them.

    pull <hub id> [--revision R] [--cache DIR]   download (resuming) into the hub cache, write the manifest
    manifest <path> --id ID                      write the sha256 manifest of a local file or folder
    verify <path>                                check a file or folder against its manifest
    publish <path> --id ID                       put a model into the fleet's NATS object store
    fetch <id> [--dest DIR]                      copy a model from the fleet's object store, checked
    copy <shared path> [--dest DIR]              copy a model from a shared path (NFS), checked

`pull` works offline from the cache alone with HF_HUB_OFFLINE=1. `publish` and `fetch` use
MODALMESH_NATS_URL (a user that may write the `models` object store for publish).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tqdm import tqdm

from services.common.bus import connect
from services.common.settings import ServiceSettings
from services.workers.settings import WorkerSettings
from services.workers.weights import WeightsError, copy_shared, fetch, publish, pull, verify, write_manifest

DEFAULT_DEST: Path = WorkerSettings.model_fields["models_dir"].default


class _Bar:
    """One progress bar per file, fed `(name, done, total)`."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        bar = self._bars.get(name)
        if bar is None:
            bar = self._bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


async def _with_bus(work: str, args: argparse.Namespace) -> Path | None:
    bus = await connect(ServiceSettings().nats_url, "models-cli")
    try:
        if work == "publish":
            manifest = await publish(bus, args.path, args.id, _Bar())
            print(f"published {args.id}: {len(manifest.files)} file(s), {manifest.total_bytes} bytes")
            return None
        return await fetch(bus, args.id, args.dest, _Bar())
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.workers.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pull")
    p.add_argument("repo_id")
    p.add_argument("--revision")
    p.add_argument("--cache", type=Path, help="hub cache folder (default: the hub's own)")
    p.add_argument("--allow", action="append", help="only files matching this pattern (repeatable)")
    p = sub.add_parser("manifest")
    p.add_argument("path", type=Path)
    p.add_argument("--id", required=True)
    p = sub.add_parser("verify")
    p.add_argument("path", type=Path)
    p = sub.add_parser("publish")
    p.add_argument("path", type=Path)
    p.add_argument("--id", required=True)
    p = sub.add_parser("fetch")
    p.add_argument("id")
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    p = sub.add_parser("copy")
    p.add_argument("path", type=Path)
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    try:
        if args.command == "pull":
            print(pull(args.repo_id, args.cache, args.revision, args.allow))
        elif args.command == "manifest":
            manifest = write_manifest(args.path, args.id)
            print(f"{args.id}: {len(manifest.files)} file(s), {manifest.total_bytes} bytes")
        elif args.command == "verify":
            if verify(args.path, _Bar()) is None:
                print(f"{args.path} has no manifest: nothing to check against", file=sys.stderr)
                return 1
            print(f"{args.path}: every file matches its manifest")
        elif args.command == "copy":
            print(asyncio.run(copy_shared(args.path, args.dest, _Bar())))
        else:
            where = asyncio.run(_with_bus(args.command, args))
            if where is not None:
                print(where)
    except WeightsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
