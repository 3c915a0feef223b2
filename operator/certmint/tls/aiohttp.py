"""aiohttp: an mTLS client session and mTLS servers that follow renewals.

    from certmint.tls.aiohttp import MTLSClient

    async with MTLSClient() as client:                   # MTLS.from_env(), or MTLSClient(mtls)
        async with client.get("https://service.internal/api/v1/data") as response:
            data = await response.json()

Each request is made with the current generation's context. aiohttp pools connections per context,
so after a renewal new requests open new connections with the new certificate, and the old ones
close when idle (keepalive_timeout).

    from certmint.tls.aiohttp import server_context
    await web.TCPSite(runner, "0.0.0.0", 8443, ssl_context=server_context(mtls)).start()
"""
from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from certmint.tls._core import MTLS
from certmint.tls._identity import Peer, RuleLike


class MTLSClient:
    """An aiohttp.ClientSession that presents the mounted certificate and verifies the server.

    mtls defaults to MTLS.from_env(); when MTLS_ENABLED=false the client makes plain requests with
    aiohttp's default verification. server_identity pins the server's SPIFFE ID or DNS name (on top
    of the host name check). Other keyword arguments go to aiohttp.ClientSession."""

    def __init__(self, mtls: MTLS | None = None, *, server_identity: RuleLike | Sequence[RuleLike] | None = None,
                 **session_kwargs: Any):
        # An MTLS made here from the environment is this client's to close (its watcher thread).
        self._owns_mtls = mtls is None
        self.mtls = mtls if mtls is not None else MTLS.from_env()
        self.server_identity = server_identity
        self._session_kwargs = session_kwargs
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with MTLSClient() as client:` (or await client.open()) first")
        return self._session

    async def open(self) -> MTLSClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(**self._session_kwargs)
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_mtls and self.mtls is not None:
            self.mtls.close()

    async def __aenter__(self) -> MTLSClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def ssl_context(self) -> ssl.SSLContext | bool:
        return self.mtls.client_context(server_identity=self.server_identity) if self.mtls else True

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """session.request(method, url, ssl=<current context>, ...): await it, or `async with` it."""
        kwargs.setdefault("ssl", self.ssl_context())
        return self.session.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Any:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Any:
        return self.request("HEAD", url, **kwargs)


@contextlib.asynccontextmanager
async def mtls_request(url: str, method: str = "GET", mtls: MTLS | None = None,
                       **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
    """One request in its own MTLSClient: `async with mtls_request(url) as response:`."""
    async with MTLSClient(mtls) as client:
        async with client.request(method, url, **kwargs) as response:
            yield response


def server_context(mtls: MTLS, *, allowed_peers: RuleLike | Sequence[RuleLike] | None = None,
                   require_client_cert: bool = True) -> ssl.SSLContext:
    """The context for web.TCPSite(..., ssl_context=...) or web.run_app(..., ssl_context=...)."""
    return mtls.server_context(allowed_peers=allowed_peers, require_client_cert=require_client_cert)


async def start_site(runner: web.AppRunner, host: str, port: int, mtls: MTLS, *,
                     allowed_peers: RuleLike | Sequence[RuleLike] | None = None, **site_kwargs: Any) -> web.TCPSite:
    """A started web.TCPSite serving runner over mutual TLS."""
    site = web.TCPSite(runner, host, port, ssl_context=server_context(mtls, allowed_peers=allowed_peers),
                       **site_kwargs)
    await site.start()
    return site


def peer(request: web.Request) -> Peer | None:
    """The client's verified identity, in a handler."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    return Peer.from_getpeercert(cert) if cert else None
