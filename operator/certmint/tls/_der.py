"""Just enough DER to read a certificate's serial number and notAfter with the standard library, for
log lines and for telling generations apart (the stdlib parses certificates only of a connected peer)."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


def pem_certificates(pem: bytes) -> list[bytes]:
    """The DER of each CERTIFICATE block, in order."""
    out = []
    for block in _PEM_CERT.findall(pem):
        try:
            out.append(base64.b64decode(b"".join(block.split()), validate=True))
        except binascii.Error:
            continue
    return out


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at i."""
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[i:i + n], "big")
        i += n
    if i + length > len(data):
        raise ValueError("truncated DER")
    return tag, i, i + length


def _time(tag: int, raw: bytes) -> dt.datetime:
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime, two-digit year (RFC 5280: 50-99 are 19xx)
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
    return dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def serial_and_not_after(der: bytes) -> tuple[str, dt.datetime]:
    """The serial number in getpeercert()'s spelling (upper-case hex) and notAfter."""
    _, tbs, _ = _tlv(der, 0)                  # Certificate ::= SEQUENCE { tbsCertificate, ... }
    _, i, _ = _tlv(der, tbs)                  # tbsCertificate ::= SEQUENCE
    tag, start, end = _tlv(der, i)
    if tag == 0xA0:                           # [0] version, present from v2 on
        i = end
        tag, start, end = _tlv(der, i)
    serial = int.from_bytes(der[start:end], "big", signed=True)
    _, _, i = _tlv(der, end)                  # signature
    _, _, i = _tlv(der, i)                    # issuer
    _, validity, _ = _tlv(der, i)             # validity ::= SEQUENCE { notBefore, notAfter }
    _, _, not_before_end = _tlv(der, validity)
    tag, start, end = _tlv(der, not_before_end)
    return _serial_hex(serial), _time(tag, der[start:end])


def _serial_hex(serial: int) -> str:
    text = format(serial, "X")
    return text if len(text) % 2 == 0 else "0" + text
