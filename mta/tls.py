"""TLS for the listeners (STARTTLS in steps 3 and 4, STLS in step 5).

``tls = "self-signed"`` makes a certificate for the server's hostname at first start (kept next
to the database so it stays the same across restarts), so a lab can show STARTTLS without setup.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

from mta.config import Config, ConfigError

log = logging.getLogger("labmail.tls")


def self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    """Write a self-signed certificate and key for ``hostname`` (ECDSA P-256, 10 years)."""
    # cryptography (~10 MB resident) loads only at first start, not in every server process
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labmail lab (self-signed)")])
    names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(config: Config) -> ssl.SSLContext | None:
    """The server-side TLS context the config asks for, or None when TLS is off."""
    tls = config.tls
    if tls.mode == "off":
        return None
    if tls.mode == "self-signed":
        folder = config.database.parent
        cert = folder / f"{config.hostname}.cert.pem"
        key = folder / f"{config.hostname}.key.pem"
        if not cert.exists() or not key.exists():
            log.info("generating a self-signed certificate for %s in %s", config.hostname, folder)
            self_signed(config.hostname, cert, key)
    else:
        cert, key = tls.cert, tls.key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{config.source}: 'tls' certificate {cert} or key {key} "
                          f"cannot be loaded: {exc}") from None
    return context
