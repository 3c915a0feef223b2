"""How the Secret cache holds Secrets: packed, with one copy of what many Secrets repeat."""
from __future__ import annotations

import base64

from certmint.kube.secrets import PackedSecrets, to_state
from certmint.kube.store import Store
from certmint.policy.types import SecretState


def secret(name: str, ca: bytes, key: bytes) -> dict:
    data = {"tls.crt": b"leaf " + name.encode(), "tls.key": key, "ca.crt": ca}
    return {"metadata": {"name": name, "labels": {"certmint.io/certificate-name": name},
                         "annotations": {"cert-manager.io/common-name": f"{name}.example"}},
            "type": "kubernetes.io/tls", "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_a_packed_secret_reads_back_exactly_and_every_secret_of_one_issuer_shares_its_ca_crt():
    store: Store[SecretState] = Store(codec=PackedSecrets())
    a, b = to_state(secret("a", b"the CA" * 100, b"key" * 50)), to_state(secret("b", b"the CA" * 100, b"key" * 50))
    store.upsert(("ns", "a"), 1, a)
    store.upsert(("ns", "b"), 1, b)
    read_a, read_b = store.get(("ns", "a")), store.get(("ns", "b"))
    assert read_a == a and read_b == b
    assert read_a is not None and read_b is not None
    assert read_a.data["ca.crt"] is read_b.data["ca.crt"]  # one copy for both
    assert read_a.data["tls.key"] is not read_b.data["tls.key"]  # keys are never shared
    gone = store.delete(("ns", "a"), 2)
    assert gone is not None and gone.value == a


def test_a_secret_without_ca_crt_stays_without_one():
    store: Store[SecretState] = Store(codec=PackedSecrets())
    plain = SecretState("p", {"tls.crt": b"x", "tls.key": b"y"}, {}, {}, "kubernetes.io/tls")
    store.upsert(("ns", "p"), 1, plain)
    assert store.get(("ns", "p")) == plain


def test_the_shared_table_is_bounded():
    packed = PackedSecrets(limit=3)
    for i in range(10):
        packed.shared(b"CA %d" % i)
    assert len(packed._shared) <= 3
    assert packed.shared(b"CA 9") == b"CA 9"


def test_a_ca_crt_that_tls_crt_already_holds_stays_in_the_blob():
    """A self-signed certificate's Secret has ca.crt == tls.crt: compressed together, the copy costs
    a few bytes, where a shared copy would cost its full size for one Secret."""
    packed = PackedSecrets()
    pem = b"-----BEGIN CERTIFICATE-----\n" + bytes(range(256)) * 3 + b"\n-----END CERTIFICATE-----\n"
    state = SecretState("self", {"tls.crt": pem, "tls.key": b"k", "ca.crt": pem}, {}, {}, "kubernetes.io/tls")
    held = packed.pack(("ns", "self"), state)
    assert held[0] is None and len(held[1]) < len(pem) + 100  # type: ignore[index]
    assert packed.unpack(("ns", "self"), held) == state
    assert packed._shared == {}
