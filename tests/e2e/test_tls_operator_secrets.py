"""The Secrets the operator issues, used as a pod would use them: a root -> intermediate chain and a
server and a client Certificate on the real control plane, their Secrets written in the kubelet's
layout, a uvicorn service and an aiohttp MTLSClient run from them with certmint.tls. Then both
certificates are renewed by the operator, the renewed Secrets are swapped in as the kubelet swaps
them, and requests keep succeeding with the new certificates. 127.0.0.1 only."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from certmint.tls import MTLS
from certmint.tls.aiohttp import MTLSClient
from certmint.tls.testing import SecretVolume
from certmint.tls.uvicorn import server as uvicorn_server
from conftest import apply, secret_data, wait_ready
from tls_peers import listener

CLIENT_ID = "spiffe://cluster.local/ns/payments/sa/checkout"

CHAIN = """apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: bootstrap}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: root}
spec:
  isCA: true
  commonName: TLS Root
  secretName: root
  privateKey: {algorithm: ECDSA, size: 384}
  issuerRef: {name: bootstrap}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: root}
spec: {ca: {secretName: root}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: intermediate}
spec:
  isCA: true
  commonName: TLS Intermediate
  secretName: intermediate
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: root}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: intermediate}
spec: {ca: {secretName: intermediate}}
"""

LEAVES = f"""apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: api}}
spec:
  secretName: api-tls
  commonName: api.payments.svc
  dnsNames: [api.payments.svc]
  ipAddresses: [127.0.0.1]
  uris: [spiffe://cluster.local/ns/payments/sa/api]
  usages: [digital signature, server auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: intermediate}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: checkout}}
spec:
  secretName: checkout-tls
  commonName: checkout
  uris: [{CLIENT_ID}]
  usages: [digital signature, client auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: intermediate}}
"""


async def whoami(request: Request) -> JSONResponse:
    peer = request.scope["extensions"]["certmint.peer"]
    return JSONResponse({"spiffe_id": peer.spiffe_id, "serial": peer.serial})


@contextlib.contextmanager
def serving(mtls: MTLS) -> Iterator[str]:
    sock = listener()
    server = uvicorn_server(Starlette(routes=[Route("/whoami", whoami)]), mtls, lifespan="off",
                            log_level="warning", allowed_peers=[CLIENT_ID])
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


def mount(kubectl, namespace: str, secret: str, volume: SecretVolume) -> dict[str, bytes]:
    """What the kubelet does when a mounted Secret changes: every key into a new generation, swapped in."""
    data = secret_data(kubectl, namespace, secret)
    volume.write(data)
    return data


def renewed(kubectl, namespace: str, certificate: str, secret: str, before: bytes) -> dict[str, bytes]:
    kubectl("annotate", "certificate", "-n", namespace, certificate, f"certmint.io/renew={time.time_ns()}",
            "--overwrite")
    deadline = time.monotonic() + 60
    while True:
        data = secret_data(kubectl, namespace, secret)
        if data.get("tls.crt") and data["tls.crt"] != before:
            return data
        assert time.monotonic() < deadline, f"{certificate} was not renewed within 60 s"
        time.sleep(0.2)


def leaf_serial(tls_crt: bytes) -> str:
    from certmint.tls._der import pem_certificates, serial_and_not_after
    return serial_and_not_after(pem_certificates(tls_crt)[0])[0]


def test_uvicorn_and_aiohttp_from_issued_secrets_across_a_renewal(kubectl, namespace, operator, tmp_path: Path):
    apply(kubectl, namespace, CHAIN)
    wait_ready(kubectl, namespace, "issuer/intermediate")
    apply(kubectl, namespace, LEAVES)
    wait_ready(kubectl, namespace, "certificate/api")
    wait_ready(kubectl, namespace, "certificate/checkout")

    api_volume, checkout_volume = SecretVolume(tmp_path / "api"), SecretVolume(tmp_path / "checkout")
    api = mount(kubectl, namespace, "api-tls", api_volume)
    checkout = mount(kubectl, namespace, "checkout-tls", checkout_volume)
    assert api["tls.crt"].count(b"BEGIN CERTIFICATE") == 2  # leaf and intermediate; ca.crt is the root

    with MTLS(api_volume.directory) as server, MTLS(checkout_volume.directory) as client, serving(server) as url:

        async def requests(count: int) -> list[tuple[str, str, str]]:
            seen = []
            async with MTLSClient(client, server_identity="spiffe://cluster.local/ns/payments/sa/api") as http:
                for _ in range(count):
                    async with http.get(url + "/whoami") as response:
                        response.raise_for_status()
                        body = await response.json()
                        transport = response.connection.transport if response.connection \
                            else response._protocol.transport
                        served = transport.get_extra_info("ssl_object").getpeercert()["serialNumber"]
                    seen.append((body["spiffe_id"], body["serial"], served))
            return seen

        first = asyncio.run(requests(20))
        assert set(first) == {(CLIENT_ID, leaf_serial(checkout["tls.crt"]), leaf_serial(api["tls.crt"]))}

        # The operator renews both; the kubelet would swap the mounted files; the running processes
        # pick them up without a restart.
        api = renewed(kubectl, namespace, "api", "api-tls", api["tls.crt"])
        checkout = renewed(kubectl, namespace, "checkout", "checkout-tls", checkout["tls.crt"])
        api_volume.write(api)
        checkout_volume.write(checkout)
        deadline = time.monotonic() + 10
        while (server.generation.serial, client.generation.serial) != \
                (leaf_serial(api["tls.crt"]), leaf_serial(checkout["tls.crt"])):
            assert time.monotonic() < deadline, "the renewed Secrets were not reloaded"
            time.sleep(0.01)
        second = asyncio.run(requests(20))
        assert set(second) == {(CLIENT_ID, leaf_serial(checkout["tls.crt"]), leaf_serial(api["tls.crt"]))}
    print(f"\n40 mTLS requests from the operator's Secrets; renewed server {leaf_serial(api['tls.crt'])[:12]}…, "
          f"client {leaf_serial(checkout['tls.crt'])[:12]}… served after the swap")
