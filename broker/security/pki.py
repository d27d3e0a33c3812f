"""The site's private certificate authority: CA, broker certificate, client certificates and the CRL.

Edge boxes sit on compound networks we do not control, so the TLS listener trusts only certificates
issued here, not the system store. Elliptic-curve P-256 keys keep the handshake cheap on small
boxes. The CRL is re-signed on every revocation and is valid as long as the CA: Mosquitto checks it
on every handshake, and an expired or missing CRL would lock every client out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 1825  # edge boxes are re-provisioned rarely; revocation, not expiry, is the control
_ORGANISATION = "GridWatch"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key made by `gridwatch broker init`")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int,
             now: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))  # tolerate small clock skew between boxes
            .not_valid_after(now + timedelta(days=days)))


def make_ca(common_name: str, now: datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = now or datetime.now(UTC)
    key = new_key()
    cert = (_builder(common_name, _name(common_name), key.public_key(), CA_DAYS, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, *,
          hostnames: Iterable[str] = (), now: datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey,
                                                                              x509.Certificate]:
    """A leaf certificate: the broker's (with ``hostnames`` as SANs) or a client's (without)."""
    now = now or datetime.now(UTC)
    key = new_key()
    server = bool(hostnames := list(hostnames))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(common_name, ca_cert.subject, key.public_key(), LEAF_DAYS, now)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hostnames]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def make_crl(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
             revoked: Iterable[tuple[int, datetime]], now: datetime | None = None) -> x509.CertificateRevocationList:
    """A CRL of the ``(serial, revoked at)`` pairs, valid until the CA itself expires (see the module docstring)."""
    now = now or datetime.now(UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - timedelta(minutes=5)).next_update(ca_cert.not_valid_after_utc))
    for serial, revoked_at in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at).build())
    return builder.sign(ca_key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
