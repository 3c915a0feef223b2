"""httpx clients (sync and async) with mutual TLS that follow renewals.

    from certmint.tls.httpx import client, async_client

    with client(mtls) as http:                       # an httpx.Client
        http.get("https://api.internal/healthz")
    async with async_client(mtls) as http:           # an httpx.AsyncClient
        await http.get("https://api.internal/healthz")

httpx binds one SSL context to its connection pool. The transports here keep one pool per
generation of the files: after a renewal, new requests go to a new pool (new connections, new
certificate), and the previous pool is closed once its last request has finished.
"""
from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from certmint.tls._core import MTLS
from certmint.tls._identity import RuleLike


class _Pool:
    def __init__(self, ctx: Any, transport: Any):
        self.ctx, self.transport, self.in_flight, self.retired = ctx, transport, 0, False


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, done: Any):
        self._inner, self._done = inner, done

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._done()


class _AsyncCountedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, done: Any):
        self._inner, self._done = inner, done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._done()


class MTLSTransport(httpx.BaseTransport):
    """An httpx transport presenting the mounted certificate; transport_kwargs go to
    httpx.HTTPTransport (limits, http2, retries, ...). With owns_mtls, closing the transport closes
    mtls too."""

    def __init__(self, mtls: MTLS, *, server_identity: RuleLike | Sequence[RuleLike] | None = None,
                 owns_mtls: bool = False, **transport_kwargs: Any):
        self.mtls, self.server_identity, self._kwargs = mtls, server_identity, transport_kwargs
        self._owns_mtls = owns_mtls
        self._lock = threading.Lock()
        self._pool: _Pool | None = None

    def _current(self) -> _Pool:
        ctx = self.mtls.client_context(server_identity=self.server_identity)
        with self._lock:
            pool = self._pool
            if pool is None or pool.ctx is not ctx:
                if pool is not None:
                    pool.retired = True
                    if pool.in_flight == 0:
                        pool.transport.close()
                pool = self._pool = _Pool(ctx, httpx.HTTPTransport(verify=ctx, **self._kwargs))
            pool.in_flight += 1
            return pool

    def _release(self, pool: _Pool) -> None:
        with self._lock:
            pool.in_flight -= 1
            close = pool.retired and pool.in_flight == 0
        if close:
            pool.transport.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._current()
        try:
            response: httpx.Response = pool.transport.handle_request(request)
        except BaseException:
            self._release(pool)
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _CountedStream(response.stream, lambda: self._release(pool))
        return response

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.transport.close()
        if self._owns_mtls:
            self.mtls.close()


class AsyncMTLSTransport(httpx.AsyncBaseTransport):
    """The asyncio/trio twin of MTLSTransport; transport_kwargs go to httpx.AsyncHTTPTransport."""

    def __init__(self, mtls: MTLS, *, server_identity: RuleLike | Sequence[RuleLike] | None = None,
                 owns_mtls: bool = False, **transport_kwargs: Any):
        self.mtls, self.server_identity, self._kwargs = mtls, server_identity, transport_kwargs
        self._owns_mtls = owns_mtls
        self._pool: _Pool | None = None

    async def _current(self) -> _Pool:
        # One event loop: no lock needed between these lines (no await until the swap is done).
        ctx = self.mtls.client_context(server_identity=self.server_identity)
        pool = self._pool
        if pool is None or pool.ctx is not ctx:
            old, pool = pool, _Pool(ctx, httpx.AsyncHTTPTransport(verify=ctx, **self._kwargs))
            self._pool = pool
            if old is not None:
                old.retired = True
                if old.in_flight == 0:
                    await old.transport.aclose()
        pool.in_flight += 1
        return pool

    async def _release(self, pool: _Pool) -> None:
        pool.in_flight -= 1
        if pool.retired and pool.in_flight == 0:
            await pool.transport.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = await self._current()
        try:
            response: httpx.Response = await pool.transport.handle_async_request(request)
        except BaseException:
            await self._release(pool)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _AsyncCountedStream(response.stream, lambda: self._release(pool))
        return response

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.transport.aclose()
        if self._owns_mtls:
            self.mtls.close()


def client(mtls: MTLS | None = None, *, server_identity: RuleLike | Sequence[RuleLike] | None = None,
           transport_kwargs: dict[str, Any] | None = None, **client_kwargs: Any) -> httpx.Client:
    """An httpx.Client over MTLSTransport; client_kwargs go to httpx.Client (base_url, timeout, ...).
    mtls defaults to MTLS.from_env(); with MTLS_ENABLED=false this is a plain httpx.Client."""
    owns = mtls is None
    mtls = mtls if mtls is not None else MTLS.from_env()
    if mtls is None:
        return httpx.Client(**client_kwargs)
    return httpx.Client(transport=MTLSTransport(mtls, server_identity=server_identity, owns_mtls=owns,
                                                **(transport_kwargs or {})), **client_kwargs)


def async_client(mtls: MTLS | None = None, *, server_identity: RuleLike | Sequence[RuleLike] | None = None,
                 transport_kwargs: dict[str, Any] | None = None, **client_kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient over AsyncMTLSTransport; mtls as for client()."""
    owns = mtls is None
    mtls = mtls if mtls is not None else MTLS.from_env()
    if mtls is None:
        return httpx.AsyncClient(**client_kwargs)
    return httpx.AsyncClient(transport=AsyncMTLSTransport(mtls, server_identity=server_identity, owns_mtls=owns,
                                                          **(transport_kwargs or {})), **client_kwargs)
