"""gRPC (grpcio) servers and channels with mutual TLS that follow renewals.

    from certmint.tls.grpc import server_credentials, PeerInterceptor, secure_channel

    server = grpc.server(executor, interceptors=[PeerInterceptor(["spiffe://example.org/ns/prod/*"])])
    server.add_secure_port("0.0.0.0:50051", server_credentials(mtls))

    with secure_channel("api.internal:50051", mtls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

grpc.aio: the same server_credentials, AioPeerInterceptor, and aio_secure_channel().

gRPC does its TLS in C, not with Python's ssl module, so:
- the server uses gRPC's own dynamic credentials: gRPC asks for the certificate configuration
  before each new handshake, and gets the current generation's key pair and anchors (client
  certificates are verified against them);
- a client channel's credentials are fixed when the channel is made, so secure_channel() returns a
  channel that makes a new underlying channel when the files change and closes the previous one
  once the RPCs started on it had time to finish (retire_after, default 30 s);
- peer identity is checked by PeerInterceptor on each RPC (gRPC's Python API has no hook inside
  the handshake): a refused client gets PERMISSION_DENIED on its first RPC. gRPC checks the server's
  name itself; Python's grpc offers no way to inspect the server's certificate, so a client pins the
  server by DNS name (the target, or the grpc.ssl_target_name_override option), not by SPIFFE ID.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from certmint.tls._core import MTLS, Generation
from certmint.tls._der import pem_certificates, serial_and_not_after
from certmint.tls._errors import PeerNotAllowed
from certmint.tls._identity import Peer, PeerPolicy, RuleLike

log = logging.getLogger("certmint.tls")


def _configuration(generation: Generation) -> Any:
    data = generation.snapshot.data
    return grpc.ssl_server_certificate_configuration([(data["key"], data["cert"])], root_certificates=data["ca"])


def server_credentials(mtls: MTLS, *, require_client_auth: bool = True) -> grpc.ServerCredentials:
    """Server credentials serving the current generation's certificate to each new connection, and
    verifying client certificates against the current anchors."""
    served = [mtls.generation]

    def fetch() -> Any:
        # gRPC calls this before each new handshake; None keeps the configuration it has.
        current = mtls.generation
        if current is served[0]:
            return None
        served[0] = current
        return _configuration(current)

    return grpc.dynamic_ssl_server_credentials(_configuration(served[0]), fetch,
                                               require_client_authentication=require_client_auth)


def channel_credentials(mtls: MTLS) -> grpc.ChannelCredentials:
    """Credentials of the current generation (fixed once made: see secure_channel for reloading)."""
    data = mtls.generation.snapshot.data
    return grpc.ssl_channel_credentials(root_certificates=data["ca"], private_key=data["key"],
                                        certificate_chain=data["cert"])


def peer(context: grpc.ServicerContext) -> Peer | None:
    """The client's verified identity, in a servicer method."""
    auth = context.auth_context()
    sans = [v.decode() for v in auth.get("x509_subject_alternative_name", [])]
    pem = b"".join(auth.get("x509_pem_cert", []))
    if not sans and not pem:
        return None
    ders = pem_certificates(pem)
    serial = serial_and_not_after(ders[0])[0] if ders else ""
    subject = b"".join(auth.get("x509_common_name", [])).decode()
    return Peer.from_san_values(sans, f"CN={subject}" if subject else "", serial)


class PeerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Admits only RPCs from clients whose certificate matches one of the rules; others get
    PERMISSION_DENIED and a log line naming their identity and the rules."""

    def __init__(self, allowed_peers: RuleLike | Sequence[RuleLike]):
        policy = PeerPolicy.of(allowed_peers, "client")
        assert policy is not None
        self.policy = policy

    def _check(self, context: grpc.ServicerContext) -> None:
        who = peer(context)
        try:
            if who is None:
                raise PeerNotAllowed("no client certificate")
            self.policy.check(who)
        except PeerNotAllowed as e:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))

    def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        check = self._check

        def wrap(behavior: Callable[..., Any] | None) -> Callable[..., Any] | None:
            if behavior is None:
                return None

            def checked(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                check(context)
                return behavior(request_or_iterator, context)
            return checked

        return handler._replace(unary_unary=wrap(handler.unary_unary), unary_stream=wrap(handler.unary_stream),
                                stream_unary=wrap(handler.stream_unary), stream_stream=wrap(handler.stream_stream))


class _MultiCallable:
    """A stub's method: each call goes to the channel of the current generation."""

    def __init__(self, channel: Any, kind: str, method: str, kwargs: dict[str, Any]):
        self._channel, self._kind, self._method, self._kwargs = channel, kind, method, kwargs
        self._bound: tuple[grpc.Channel, Any] | None = None

    def _target(self) -> Any:
        current = self._channel.current()
        bound = self._bound
        if bound is None or bound[0] is not current:
            bound = (current, getattr(current, self._kind)(self._method, **self._kwargs))
            self._bound = bound
        return bound[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().future(*args, **kwargs)


class _MultiCallables:
    """The four ways a channel makes calls, each a _MultiCallable that takes the channel of the
    current credentials at call time; shared by the sync and asyncio channels."""

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: bool = False) -> Any:
        return _MultiCallable(self, "unary_unary", method, {"request_serializer": request_serializer,
                                                            "response_deserializer": response_deserializer,
                                                            "_registered_method": _registered_method})

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool = False) -> Any:
        return _MultiCallable(self, "unary_stream", method, {"request_serializer": request_serializer,
                                                             "response_deserializer": response_deserializer,
                                                             "_registered_method": _registered_method})

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool = False) -> Any:
        return _MultiCallable(self, "stream_unary", method, {"request_serializer": request_serializer,
                                                             "response_deserializer": response_deserializer,
                                                             "_registered_method": _registered_method})

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: bool = False) -> Any:
        return _MultiCallable(self, "stream_stream", method, {"request_serializer": request_serializer,
                                                              "response_deserializer": response_deserializer,
                                                              "_registered_method": _registered_method})


class ReloadingChannel(_MultiCallables, grpc.Channel):  # type: ignore[misc]
    """A secure channel whose client certificate and anchors follow the files (see the module doc)."""

    def __init__(self, target: str, mtls: MTLS, *, options: Sequence[tuple[str, Any]] = (),
                 compression: Any = None, retire_after: float = 30.0):
        self.target, self.mtls, self.options, self.compression = target, mtls, list(options), compression
        self.retire_after = retire_after
        self._lock = threading.Lock()
        self._generation: Generation | None = None
        self._channel: grpc.Channel | None = None
        self._retiring: set[grpc.Channel] = set()
        self._closed = False

    def current(self) -> grpc.Channel:
        generation = self.mtls.generation
        channel = self._channel
        if channel is not None and self._generation is generation:
            return channel
        with self._lock:
            if self._closed:
                raise ValueError("the channel is closed")
            if self._channel is None or self._generation is not generation:
                old = self._channel
                self._channel = grpc.secure_channel(self.target, channel_credentials(self.mtls), self.options,
                                                    self.compression)
                self._generation = generation
                if old is not None:
                    self._retire(old)
            return self._channel

    def _retire(self, old: grpc.Channel) -> None:
        # RPCs already running on the old channel keep its connection; closing it at once would
        # cancel them.
        self._retiring.add(old)

        def close() -> None:
            with self._lock:
                self._retiring.discard(old)
            old.close()
        timer = threading.Timer(self.retire_after, close)
        timer.daemon = True
        timer.start()

    def subscribe(self, callback: Callable[..., Any], try_to_connect: bool = False) -> None:
        self.current().subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[..., Any]) -> None:
        if self._channel is not None:
            self._channel.unsubscribe(callback)


    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels = [c for c in [self._channel, *self._retiring] if c is not None]
            self._channel, self._retiring = None, set()
        for c in channels:
            c.close()

    def __enter__(self) -> ReloadingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def secure_channel(target: str, mtls: MTLS, *, options: Sequence[tuple[str, Any]] = (), compression: Any = None,
                   retire_after: float = 30.0) -> ReloadingChannel:
    """A channel to target presenting the mounted certificate, following renewals."""
    return ReloadingChannel(target, mtls, options=options, compression=compression, retire_after=retire_after)


# --- grpc.aio ---------------------------------------------------------------------------------------


class AioPeerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """PeerInterceptor for grpc.aio servers."""

    def __init__(self, allowed_peers: RuleLike | Sequence[RuleLike]):
        policy = PeerPolicy.of(allowed_peers, "client")
        assert policy is not None
        self.policy = policy

    async def _check(self, context: Any) -> None:
        who = peer(context)
        try:
            if who is None:
                raise PeerNotAllowed("no client certificate")
            self.policy.check(who)
        except PeerNotAllowed as e:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))

    async def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        check = self._check

        def unary_response(behavior: Callable[..., Any] | None) -> Callable[..., Any] | None:
            if behavior is None:
                return None

            async def checked(request_or_iterator: Any, context: Any) -> Any:
                await check(context)
                result = behavior(request_or_iterator, context)
                return await result if inspect.isawaitable(result) else result
            return checked

        def streaming_response(behavior: Callable[..., Any] | None) -> Callable[..., Any] | None:
            if behavior is None:
                return None
            if inspect.isasyncgenfunction(behavior):
                async def checked_generator(request_or_iterator: Any, context: Any) -> Any:
                    await check(context)
                    async for item in behavior(request_or_iterator, context):
                        yield item
                return checked_generator
            return unary_response(behavior)  # a coroutine writing with context.write()

        return handler._replace(unary_unary=unary_response(handler.unary_unary),
                                unary_stream=streaming_response(handler.unary_stream),
                                stream_unary=unary_response(handler.stream_unary),
                                stream_stream=streaming_response(handler.stream_stream))


class AioReloadingChannel(_MultiCallables):
    """A grpc.aio channel whose client certificate and anchors follow the files: a new underlying
    channel per generation; the previous one is closed with a grace of retire_after seconds, so
    the RPCs running on it finish first. Use it where a grpc.aio.Channel is expected (stubs take it)."""

    def __init__(self, target: str, mtls: MTLS, *, options: Sequence[tuple[str, Any]] = (),
                 compression: Any = None, retire_after: float = 30.0):
        self.target, self.mtls, self.options, self.compression = target, mtls, list(options), compression
        self.retire_after = retire_after
        self._generation: Generation | None = None
        self._channel: grpc.aio.Channel | None = None
        self._closing: set[Any] = set()

    def current(self) -> grpc.aio.Channel:
        generation = self.mtls.generation
        if self._channel is None or self._generation is not generation:
            old = self._channel
            self._channel = grpc.aio.secure_channel(self.target, channel_credentials(self.mtls), self.options,
                                                    self.compression)
            self._generation = generation
            if old is not None:
                task = asyncio.get_running_loop().create_task(old.close(grace=self.retire_after))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return self._channel


    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> "AioReloadingChannel":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def aio_secure_channel(target: str, mtls: MTLS, *, options: Sequence[tuple[str, Any]] = (), compression: Any = None,
                       retire_after: float = 30.0) -> AioReloadingChannel:
    """secure_channel for grpc.aio."""
    return AioReloadingChannel(target, mtls, options=options, compression=compression, retire_after=retire_after)
