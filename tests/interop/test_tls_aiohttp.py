"""aiohttp on both ends (web.TCPSite server, MTLSClient like seed 004's) over mutual TLS from
kubelet-style Secret volumes: renewals under steady traffic with no failed request, SPIFFE ID
rules on the server and a pinned server identity on the client. Everything runs over 127.0.0.1."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from certmint.tls import MTLS, PeerNotAllowed
from certmint.tls.aiohttp import MTLSClient, mtls_request, peer, server_context
from certmint.tls.testing import Renewals, Traffic
from tls_peers import listener, whoami_request


async def whoami(request: web.Request) -> web.Response:
    who = peer(request)
    return web.json_response({"serial": who.serial, "spiffe_id": who.spiffe_id})


@contextlib.contextmanager
def serving(mtls: MTLS, **kwargs) -> Iterator[str]:
    """An aiohttp server on its own event loop in a thread, on an ephemeral 127.0.0.1 port."""
    loop = asyncio.new_event_loop()
    sock = listener()
    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=server_context(mtls, **kwargs)).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_renewals_under_load_drop_no_request(tmp_path):
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as client, \
            serving(server) as url:
        traffic = Traffic.asyncio(lambda: MTLSClient(client), lambda c: whoami_request(c, url), concurrency=4)
        traffic.wait_for(renewals.client.serial, renewals.server.serial)
        report = renewals.rotate(server, client, traffic)
    print(f"\naiohttp server + aiohttp MTLSClient across 3 renewals of both certificates: {report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


def test_spiffe_rules_on_both_ends(tmp_path, caplog, monkeypatch):
    renewals = Renewals(tmp_path, client_uri="spiffe://example.org/ns/prod/sa/web")
    other = Renewals(tmp_path / "other", renewals.ca, client_uri="spiffe://example.org/ns/dev/sa/web")
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as good, \
            MTLS(other.client_volume.directory) as bad, \
            serving(server, allowed_peers=["spiffe://example.org/ns/prod/sa/web"]) as url:

        async def main() -> None:
            async with MTLSClient(good, server_identity="spiffe://example.org/ns/test/sa/server") as client:
                async with client.get(url + "/whoami") as response:
                    assert await response.json() == {"serial": renewals.client.serial,
                                                     "spiffe_id": "spiffe://example.org/ns/prod/sa/web"}
            async with MTLSClient(bad) as client:
                with pytest.raises(aiohttp.ClientError):
                    async with client.get(url + "/whoami") as response:
                        await response.read()
            # The client refuses a server that is not the one it pinned, in the handshake.
            async with MTLSClient(good, server_identity="spiffe://example.org/ns/test/sa/billing") as client:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as refused:
                    await client.get(url + "/whoami")
                assert isinstance(refused.value.certificate_error, PeerNotAllowed)
            # The seed's one-shot helper, configured from the environment the seeds use.
            monkeypatch.setenv("MTLS_CERT_PATH", str(renewals.client_volume.directory / "tls.crt"))
            monkeypatch.setenv("MTLS_KEY_PATH", str(renewals.client_volume.directory / "tls.key"))
            monkeypatch.setenv("MTLS_CA_PATH", str(renewals.client_volume.directory / "ca.crt"))
            async with mtls_request(url + "/whoami") as response:
                assert (await response.json())["serial"] == renewals.client.serial

        with caplog.at_level(logging.WARNING, logger="certmint.tls"):
            asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    refused_client = [m for m in lines if m.startswith("refused client")]
    refused_server = [m for m in lines if m.startswith("refused server")]
    assert refused_client and "spiffe://example.org/ns/dev/sa/web" in refused_client[0] \
        and "rule spiffe://example.org/ns/prod/sa/web" in refused_client[0], lines
    assert refused_server and "spiffe://example.org/ns/test/sa/server" in refused_server[0] \
        and "spiffe://example.org/ns/test/sa/billing" in refused_server[0], lines
    print("\n" + refused_client[0] + "\n" + refused_server[0])
