"""grpcio over mutual TLS from kubelet-style Secret volumes: the server's certificate follows renewals
through gRPC's dynamic credentials, the client's through a channel remade per generation; renewals
under steady traffic with no failed RPC; SPIFFE ID rules through the server interceptor.

The RPC is the standard health check (grpcio-health-checking), so no code is generated. 127.0.0.1
only."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from certmint.tls import MTLS
from certmint.tls.grpc import (
    AioPeerInterceptor,
    PeerInterceptor,
    aio_secure_channel,
    peer,
    secure_channel,
    server_credentials,
)
from certmint.tls.testing import Renewals, Traffic


class WhoAmIHealth(health.HealthServicer):
    """The standard health service, answering with the caller's certificate serial and SPIFFE ID in
    the trailing metadata, as the server saw them."""

    def Check(self, request, context):
        who = peer(context)
        context.set_trailing_metadata((("x-peer-serial", who.serial), ("x-peer-spiffe-id", who.spiffe_id or "")))
        return super().Check(request, context)


def start_server(mtls: MTLS, interceptors=()) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=list(interceptors))
    servicer = WhoAmIHealth()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(mtls))
    server.start()
    return server, f"127.0.0.1:{port}"


def check(stub: health_pb2_grpc.HealthStub) -> str:
    """One health check; the serial the server saw."""
    response, call = stub.Check.with_call(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    return dict(call.trailing_metadata())["x-peer-serial"]


class ServerCertificateProbe:
    """gRPC's Python API does not show a client the server's certificate, so this probe makes its own
    TLS connections to the server's port (ALPN h2, the client's current context, as the channel
    would) every 50 ms and records the serial gRPC presents to a new connection."""

    def __init__(self, address: str, mtls: MTLS):
        self.address, self.mtls, self.serial = address, mtls, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._probe()
        self._thread.start()

    def _probe(self) -> None:
        host, port = self.address.rsplit(":", 1)
        ctx = self.mtls.client_context()   # the client's current certificate and anchors
        ctx.set_alpn_protocols(["h2"])     # as gRPC offers (this test makes no other use of the context)
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as s:
            self.serial = s.getpeercert()["serialNumber"]

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self._probe()
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_renewals_under_load_drop_no_rpc(tmp_path):
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server_mtls, MTLS(renewals.client_volume.directory) as mtls:
        server, address = start_server(server_mtls)
        probe = ServerCertificateProbe(address, mtls)
        try:
            with secure_channel(address, mtls) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                traffic = Traffic.threads(lambda: (check(stub), probe.serial), concurrency=4)
                traffic.wait_for(renewals.client.serial, renewals.server.serial)
                report = renewals.rotate(server_mtls, mtls, traffic)
        finally:
            probe.stop()
            server.stop(grace=None)
    print(f"\ngRPC server (dynamic credentials) + reloading channel across 3 renewals of both certificates: "
          f"{report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


def test_spiffe_rule_admits_one_client_and_refuses_another(tmp_path, caplog):
    renewals = Renewals(tmp_path, client_uri="spiffe://example.org/ns/prod/sa/web")
    other = Renewals(tmp_path / "other", renewals.ca, client_uri="spiffe://example.org/ns/dev/sa/web")
    with MTLS(renewals.server_volume.directory) as server_mtls, MTLS(renewals.client_volume.directory) as good, \
            MTLS(other.client_volume.directory) as bad:
        server, address = start_server(server_mtls, [PeerInterceptor(["spiffe://example.org/ns/prod/*"])])
        try:
            with secure_channel(address, good) as channel:
                response, call = health_pb2_grpc.HealthStub(channel).Check.with_call(health_pb2.HealthCheckRequest(),
                                                                                    timeout=10)
                assert dict(call.trailing_metadata())["x-peer-spiffe-id"] == "spiffe://example.org/ns/prod/sa/web"
            with caplog.at_level(logging.WARNING, logger="certmint.tls"), secure_channel(address, bad) as channel, \
                    pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "spiffe://example.org/ns/dev/sa/web" in refused.value.details()
        finally:
            server.stop(grace=None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused client")]
    assert lines and "spiffe://example.org/ns/dev/sa/web" in lines[0] and "spiffe://example.org/ns/prod/*" in lines[0]
    print("\n" + lines[0])


def test_a_client_of_another_ca_fails_the_handshake(tmp_path):
    """The dynamic credentials verify client certificates against the current anchors."""
    renewals = Renewals(tmp_path)
    stranger = Renewals(tmp_path / "stranger")   # its own CA
    stranger.client_volume.write(stranger.client.secret(ca_pem=renewals.ca.cert_pem))
    with MTLS(renewals.server_volume.directory) as server_mtls, MTLS(stranger.client_volume.directory) as mtls:
        server, address = start_server(server_mtls)
        try:
            with secure_channel(address, mtls) as channel, pytest.raises(grpc.RpcError) as failed:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            server.stop(grace=None)


# --- grpc.aio ---------------------------------------------------------------------------------------


def test_aio_channel_renewals_under_load_drop_no_rpc(tmp_path):
    """A grpc.aio client (the seeds' services use grpc.aio) through aio_secure_channel."""
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server_mtls, MTLS(renewals.client_volume.directory) as mtls:
        server, address = start_server(server_mtls)
        probe = ServerCertificateProbe(address, mtls)

        async def request(channel) -> tuple[str, str]:
            call = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            response = await call
            assert response.status == health_pb2.HealthCheckResponse.SERVING
            return dict(await call.trailing_metadata())["x-peer-serial"], probe.serial

        try:
            traffic = Traffic.asyncio(lambda: aio_secure_channel(address, mtls), request, concurrency=8)
            traffic.wait_for(renewals.client.serial, renewals.server.serial)
            report = renewals.rotate(server_mtls, mtls, traffic)
        finally:
            probe.stop()
            server.stop(grace=None)
    print(f"\ngRPC server + grpc.aio reloading channel across 3 renewals of both certificates: {report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


class AioWhoAmIHealth(health.aio.HealthServicer):
    async def Check(self, request, context):
        who = peer(context)
        context.set_trailing_metadata((("x-peer-serial", who.serial), ("x-peer-spiffe-id", who.spiffe_id or "")))
        return await super().Check(request, context)


@contextlib.contextmanager
def aio_serving(mtls: MTLS, interceptors=()) -> Iterator[str]:
    """A grpc.aio server on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=list(interceptors))
        servicer = AioWhoAmIHealth()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(mtls))
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_aio_server_spiffe_rule_and_renewal(tmp_path, caplog):
    """A grpc.aio server with AioPeerInterceptor: one client admitted, another refused; after a
    renewal of the server's certificate, new connections get the new one."""
    renewals = Renewals(tmp_path, client_uri="spiffe://example.org/ns/prod/sa/web")
    other = Renewals(tmp_path / "other", renewals.ca, client_uri="spiffe://example.org/ns/dev/sa/web")
    with MTLS(renewals.server_volume.directory) as server_mtls, MTLS(renewals.client_volume.directory) as good, \
            MTLS(other.client_volume.directory) as bad, \
            aio_serving(server_mtls, [AioPeerInterceptor(["spiffe://example.org/ns/prod/*"])]) as address:
        with secure_channel(address, good) as channel:
            assert check(health_pb2_grpc.HealthStub(channel)) == renewals.client.serial
        with caplog.at_level(logging.WARNING, logger="certmint.tls"), secure_channel(address, bad) as channel, \
                pytest.raises(grpc.RpcError) as refused:
            check(health_pb2_grpc.HealthStub(channel))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        renewed = renewals.renew_server()
        probe = ServerCertificateProbe(address, good)
        try:
            deadline = time.monotonic() + 10
            while probe.serial != renewed.serial:
                assert time.monotonic() < deadline, "the aio server did not serve the renewed certificate"
                time.sleep(0.02)
        finally:
            probe.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused client")]
    assert lines and "spiffe://example.org/ns/dev/sa/web" in lines[0], lines
    print("\n" + lines[0])
