"""uvicorn serving a Starlette app over mutual TLS from a kubelet-style Secret volume: renewals of
both certificates under steady traffic with no failed request, and SPIFFE ID rules.

The client is certmint.tls.aiohttp.MTLSClient, the pairing the seeds run (an aiohttp caller, a
uvicorn service). Everything runs over 127.0.0.1."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from certmint.tls import MTLS
from certmint.tls.aiohttp import MTLSClient
from certmint.tls.testing import Renewals, Traffic
from certmint.tls.uvicorn import server as uvicorn_server
from tls_peers import listener, whoami_request


async def whoami(request: Request) -> JSONResponse:
    peer = request.scope["extensions"]["certmint.peer"]
    tls = request.scope["extensions"]["tls"]
    return JSONResponse({"serial": peer.serial, "spiffe_id": peer.spiffe_id, "tls_version": tls["tls_version"],
                         "chain": len(tls["client_cert_chain"])})


APP = Starlette(routes=[Route("/whoami", whoami)])


@contextlib.contextmanager
def serving(mtls: MTLS, **kwargs) -> Iterator[str]:
    """uvicorn in a thread on an ephemeral 127.0.0.1 port; yields its base URL."""
    sock = listener()
    server = uvicorn_server(APP, mtls, lifespan="off", log_level="warning", **kwargs)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_renewals_under_load_drop_no_request(tmp_path):
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as client, \
            serving(server) as url:
        traffic = Traffic.asyncio(lambda: MTLSClient(client), lambda c: whoami_request(c, url), concurrency=8)
        traffic.wait_for(renewals.client.serial, renewals.server.serial)
        report = renewals.rotate(server, client, traffic)
    print(f"\nuvicorn + aiohttp client across 3 renewals of both certificates: {report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


def test_spiffe_rule_admits_one_client_and_refuses_another(tmp_path, caplog):
    renewals = Renewals(tmp_path, client_uri="spiffe://example.org/ns/prod/sa/web")
    other = Renewals(tmp_path / "other", renewals.ca, client_uri="spiffe://example.org/ns/dev/sa/web")
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as good, \
            MTLS(other.client_volume.directory) as bad, \
            serving(server, allowed_peers=["spiffe://example.org/ns/prod/*"]) as url:

        async def main() -> None:
            async with MTLSClient(good, server_identity="spiffe://example.org/ns/test/sa/server") as client:
                async with client.get(url + "/whoami") as response:
                    body = await response.json()
                assert body == {"serial": renewals.client.serial, "spiffe_id": "spiffe://example.org/ns/prod/sa/web",
                                "tls_version": 0x0304, "chain": 1}
            async with MTLSClient(bad) as client:
                with pytest.raises(aiohttp.ClientError):
                    async with client.get(url + "/whoami") as response:
                        await response.read()

        with caplog.at_level(logging.WARNING, logger="certmint.tls"):
            asyncio.run(main())
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused client")]
    assert refused and "spiffe://example.org/ns/dev/sa/web" in refused[0] \
        and "spiffe://example.org/ns/prod/*" in refused[0], refused
    print("\n" + refused[0])
