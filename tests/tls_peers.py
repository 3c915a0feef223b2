"""What the TLS tests share: a listening socket, and the aiohttp client's view of the server."""
from __future__ import annotations

import socket

import aiohttp

from certmint.tls.aiohttp import MTLSClient


def listener() -> socket.socket:
    """A listening socket on an ephemeral 127.0.0.1 port. Made with proto=IPPROTO_TCP: asyncio sets
    TCP_NODELAY only on sockets that say they are TCP, and socket.create_server's say proto 0, which
    leaves Nagle's algorithm on and costs every response a 40 ms delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def server_serial(response: aiohttp.ClientResponse) -> str:
    """The serial of the certificate the server presented on this response's connection. aiohttp
    hands a connection back to its pool as soon as a short body has arrived (response.connection is
    then None); the response's protocol object still holds the transport."""
    transport = response.connection.transport if response.connection else response._protocol.transport
    return transport.get_extra_info("ssl_object").getpeercert()["serialNumber"]


async def whoami_request(client: MTLSClient, url: str) -> tuple[str, str]:
    async with client.get(url + "/whoami") as response:
        serial = server_serial(response)
        response.raise_for_status()
        body = await response.json()
    return body["serial"], serial
