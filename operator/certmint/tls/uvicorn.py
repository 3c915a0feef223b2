"""uvicorn (FastAPI, Starlette, any ASGI app) with mutual TLS that follows renewals.

    from certmint.tls import MTLS
    from certmint.tls.uvicorn import run

    run(app, MTLS.from_env(), host="0.0.0.0", port=8443,
        allowed_peers=["spiffe://example.org/ns/prod/*"])

uvicorn is given certmint's front context (through its ssl_context_factory), so the files uvicorn
would otherwise load once at start-up are replaced by the reloading contexts. The app sees the
client's certificate in the ASGI TLS extension, `scope["extensions"]["tls"]`
(https://asgi.readthedocs.io/en/latest/extensions.html#tls), and the parsed identity as
`scope["extensions"]["certmint.peer"]` (a certmint.tls.Peer).
"""
from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from certmint.tls._core import MTLS
from certmint.tls._identity import Peer, RuleLike

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _tls_extension(ssl_object: ssl.SSLObject | None) -> tuple[dict[str, Any], Peer | None]:
    if ssl_object is None:
        return {}, None
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    cert = ssl_object.getpeercert()
    peer = Peer.from_getpeercert(cert) if cert else None
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": peer.subject if peer else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }, peer


def _protocol_with_tls_scope(base: type) -> type:
    """uvicorn's HTTP protocol, adding the TLS extension to each request's scope. uvicorn builds the
    scope itself and has no hook for it, so the protocol wraps the app per connection, where the
    connection's SSL object is known."""

    class TLSScopeProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            tls, peer = _tls_extension(transport.get_extra_info("ssl_object"))
            if not tls:
                return
            inner: Any = self.app  # type: ignore[has-type]

            async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                extensions = dict(scope.get("extensions") or {})
                extensions["tls"] = tls
                extensions["certmint.peer"] = peer
                await inner({**scope, "extensions": extensions}, receive, send)

            self.app = app

    TLSScopeProtocol.__name__ = TLSScopeProtocol.__qualname__ = f"TLSScope{base.__name__}"
    return TLSScopeProtocol


def config(app: Any, mtls: MTLS, *, allowed_peers: RuleLike | Sequence[RuleLike] | None = None,
           require_client_cert: bool = True, **kwargs: Any) -> uvicorn.Config:
    """A uvicorn.Config serving app over mutual TLS from mtls; kwargs are uvicorn's (host, port, ...).
    ssl_* file arguments are refused: the certificate comes from mtls."""
    clashing = sorted(k for k in kwargs if k.startswith("ssl_"))
    if clashing:
        raise TypeError(f"{', '.join(clashing)}: the certificate, key and CA come from the MTLS object")
    http = kwargs.pop("http", "auto")
    if isinstance(http, str):
        http = import_from_string(HTTP_PROTOCOLS.get(http, http))

    def factory(cfg: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        alpn = getattr(cfg.http_protocol_class, "alpn_protocols", None)
        return mtls.server_context(allowed_peers=allowed_peers, require_client_cert=require_client_cert,
                                   alpn_protocols=alpn)

    return uvicorn.Config(app, http=_protocol_with_tls_scope(http), ssl_context_factory=factory, **kwargs)


def server(app: Any, mtls: MTLS, **kwargs: Any) -> uvicorn.Server:
    """A uvicorn.Server for config(app, mtls, **kwargs): `await server.serve()`, or run it in a thread."""
    return uvicorn.Server(config(app, mtls, **kwargs))


def run(app: Any, mtls: MTLS | None = None, **kwargs: Any) -> None:
    """uvicorn.run over mutual TLS; mtls defaults to MTLS.from_env(). With MTLS_ENABLED=false the app
    is served over plain HTTP (and a warning says so)."""
    if mtls is None:
        mtls = MTLS.from_env()
    if mtls is None:
        kwargs.pop("allowed_peers", None)
        kwargs.pop("require_client_cert", None)
        uvicorn.run(app, **kwargs)
        return
    server(app, mtls, **kwargs).run()
