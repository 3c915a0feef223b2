"""httpx clients, sync and async, over mutual TLS from a kubelet-style Secret volume, against uvicorn:
renewals under steady traffic with no failed request, SPIFFE ID rules both ways. 127.0.0.1 only."""
from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from certmint.tls import MTLS
from certmint.tls.httpx import async_client, client
from certmint.tls.testing import Renewals, Traffic
from test_tls_uvicorn import serving


def server_serial(response: httpx.Response) -> str:
    """Read while the response is open: once it closes, a connection of a retired pool is closed too."""
    return response.extensions["network_stream"].get_extra_info("ssl_object").getpeercert()["serialNumber"]


def test_sync_client_renewals_under_load_drop_no_request(tmp_path):
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as mtls, \
            serving(server) as url, client(mtls, base_url=url, timeout=10) as http:

        def request() -> tuple[str, str]:
            with http.stream("GET", "/whoami") as response:
                serial = server_serial(response)
                response.raise_for_status()
                response.read()
            return response.json()["serial"], serial

        traffic = Traffic.threads(request, concurrency=8)
        traffic.wait_for(renewals.client.serial, renewals.server.serial)
        report = renewals.rotate(server, mtls, traffic)
    print(f"\nhttpx.Client against uvicorn across 3 renewals of both certificates: {report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


def test_async_client_renewals_under_load_drop_no_request(tmp_path):
    renewals = Renewals(tmp_path)
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as mtls, \
            serving(server) as url:

        async def request(http: httpx.AsyncClient) -> tuple[str, str]:
            async with http.stream("GET", "/whoami") as response:
                serial = server_serial(response)
                response.raise_for_status()
                await response.aread()
            return response.json()["serial"], serial

        traffic = Traffic.asyncio(lambda: async_client(mtls, base_url=url, timeout=10), request, concurrency=8)
        traffic.wait_for(renewals.client.serial, renewals.server.serial)
        report = renewals.rotate(server, mtls, traffic)
    print(f"\nhttpx.AsyncClient against uvicorn across 3 renewals of both certificates: {report}")
    assert report.failed == 0, report.errors
    assert report.rate >= 50, report


def test_spiffe_rules_both_ways(tmp_path, caplog):
    renewals = Renewals(tmp_path, client_uri="spiffe://example.org/ns/prod/sa/web")
    other = Renewals(tmp_path / "other", renewals.ca, client_uri="spiffe://example.org/ns/dev/sa/web")
    with MTLS(renewals.server_volume.directory) as server, MTLS(renewals.client_volume.directory) as good, \
            MTLS(other.client_volume.directory) as bad, \
            serving(server, allowed_peers=["spiffe://example.org/ns/prod/*"]) as url, \
            caplog.at_level(logging.WARNING, logger="certmint.tls"):
        with client(good, server_identity="spiffe://example.org/ns/test/sa/server", base_url=url) as http:
            assert http.get("/whoami").json()["spiffe_id"] == "spiffe://example.org/ns/prod/sa/web"
        with client(bad, base_url=url) as http, pytest.raises(httpx.TransportError):
            http.get("/whoami")
        with client(good, server_identity="spiffe://example.org/ns/test/sa/other", base_url=url) as http, \
                pytest.raises(httpx.ConnectError, match="is not allowed by spiffe://example.org/ns/test/sa/other"):
            http.get("/whoami")

        async def refused_async() -> None:
            async with async_client(bad, base_url=url) as http:
                with pytest.raises(httpx.TransportError):
                    await http.get("/whoami")
            async with async_client(good, base_url=url) as http:
                assert (await http.get("/whoami")).json()["serial"] == renewals.client.serial

        asyncio.run(refused_async())
    lines = [r.getMessage() for r in caplog.records]
    refused_clients = [m for m in lines if m.startswith("refused client spiffe://example.org/ns/dev/sa/web")]
    assert len(refused_clients) == 2 and all("spiffe://example.org/ns/prod/*" in m for m in refused_clients), lines
    assert any(m.startswith("refused server spiffe://example.org/ns/test/sa/server") for m in lines), lines
    print("\n" + "\n".join(m for m in lines if m.startswith("refused")))
