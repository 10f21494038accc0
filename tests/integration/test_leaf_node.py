"""An edge node joining the fleet as jetson/ does: a hub nats-server with the compose configuration
plus `leafnodes.conf`, a leaf nats-server with `jetson/leaf.conf`, the link between them over TLS
with certificates made here (openssl). A worker on the leaf, logged in with its fleet password,
reaches the hub's JetStream through the link, and its heartbeat published on the leaf arrives at
the hub."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import nats
import pytest

from services.devstack import NatsServer, free_port
from services.natsauth import ADMIN, ROLES, password_variable

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")


def make_certificates(folder: Path) -> None:
    """A CA, the hub's server certificate for 127.0.0.1, and the leaf's client certificate."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=modalmesh-test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    )
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "leaf"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}-key.pem",
            "-out",
            f"{name}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            f"{name}.pem",
        )


async def test_a_leaf_node_over_tls_carries_an_edge_worker_into_the_fleet(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    leaf_port = free_port()
    passwords = {user: f"pw-{user}-42" for user in (ADMIN, *ROLES)}
    env = {password_variable(u): p for u, p in passwords.items()} | {
        "NATS_LEAF_PASSWORD": "leaf-pw-42",
        "NATS_HUB_URL": f"tls://leaf:leaf-pw-42@127.0.0.1:{leaf_port}",
    }
    hub_dir, edge_dir = tmp_path / "hub", tmp_path / "edge"
    hub_dir.mkdir()
    edge_dir.mkdir()
    compose = ROOT / "deploy" / "compose" / "nats"
    (hub_dir / "nats.conf").write_text(
        (compose / "nats.conf").read_text().replace("store_dir: /data", f"store_dir: {hub_dir}/js")
        + "include ./leafnodes.conf\n"
    )
    (hub_dir / "auth.conf").write_text((compose / "auth.conf").read_text())
    (hub_dir / "leafnodes.conf").write_text(
        (compose / "leafnodes.conf")
        .read_text()
        .replace("/certs", str(certs))
        .replace("port: 7422", f"port: {leaf_port}")
    )
    (edge_dir / "leaf.conf").write_text((ROOT / "jetson" / "leaf.conf").read_text().replace("/certs", str(certs)))
    hub = NatsServer(store=hub_dir, config=hub_dir / "nats.conf", env=env).start()
    edge = NatsServer(store=edge_dir, config=edge_dir / "leaf.conf", env=env).start()
    try:
        admin = await nats.connect(f"nats://admin:{passwords['admin']}@127.0.0.1:{hub.port}")
        await admin.jetstream().add_stream(name="EDGE", subjects=["result.edge"])
        heartbeats = await admin.subscribe("worker.status.>")
        worker = await nats.connect(f"nats://worker:{passwords['worker']}@127.0.0.1:{edge.port}")
        for _ in range(100):  # the leaf link comes up within a moment of the leaf starting
            await worker.publish("worker.status.orin-1", b"alive")
            try:
                msg = await heartbeats.next_msg(timeout=0.1)
                break
            except nats.errors.TimeoutError:
                continue
        else:
            pytest.fail("no heartbeat crossed the leaf link")
        assert msg.subject == "worker.status.orin-1"
        ack = await worker.jetstream().publish("result.edge", b"from the edge")  # the hub's JetStream
        assert ack.stream == "EDGE"
        stored = await admin.jetstream().get_msg("EDGE", ack.seq)
        assert stored.data == b"from the edge"
        await asyncio.gather(worker.close(), admin.close())
    finally:
        edge.stop()
        hub.stop()
