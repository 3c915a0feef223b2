"""Pure, typed and defaulted views of certmint's custom resources (no Kubernetes here).

- `parse_certificate_spec(spec) -> CertificateSpec` and `renewal_time(...)`
- `parse_issuer_spec(spec) -> IssuerSpec`
- `parse_duration(text)` / `format_duration(td)` for Go duration strings
- `SpecError`: a spec certmint cannot act on; the message is for the user.
"""
from certmint.model.certificate import (
    CertificateSpec,
    IssuerRef,
    JksKeystore,
    Pkcs12Keystore,
    parse_certificate_spec,
    renewal_time,
)
from certmint.model.duration import format_duration, parse_duration
from certmint.model.errors import SpecError
from certmint.model.issuer import IssuerSpec, parse_issuer_spec

__all__ = [
    "CertificateSpec",
    "IssuerRef",
    "IssuerSpec",
    "JksKeystore",
    "Pkcs12Keystore",
    "SpecError",
    "format_duration",
    "parse_certificate_spec",
    "parse_duration",
    "parse_issuer_spec",
    "renewal_time",
]
