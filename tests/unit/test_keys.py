"""Keys made in other processes are real, distinct and of the asked type."""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certmint.controller.keys import KeyFactory
from certmint.pki.keys import key_matches_spec
from certmint.pki.types import KeySpec


def test_rsa_keys_come_from_the_process_pool_and_ecdsa_keys_from_the_caller():
    factory = KeyFactory(processes=2)
    try:
        spec = KeySpec("RSA", 2048)
        keys = [factory.new_key(spec) for _ in range(3)]
        assert factory._pool is not None  # RSA went to the pool
        assert all(isinstance(k, rsa.RSAPrivateKey) and key_matches_spec(k, spec) for k in keys)
        assert len({k.public_key().public_numbers().n for k in keys}) == 3
        # the key is usable: it signs
        keys[0].sign(b"x", *_pkcs1v15_sha256())
        ecdsa = factory.new_key(KeySpec("ECDSA", 384))
        assert isinstance(ecdsa, ec.EllipticCurvePrivateKey) and ecdsa.curve.key_size == 384
    finally:
        factory.close()


def _pkcs1v15_sha256():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return padding.PKCS1v15(), hashes.SHA256()
