"""SMPP over TLS against the simulator: a verified link carries submits and receipts, and a
certificate the connector does not trust keeps it down with nothing sent."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omnirelay.core.statuses import Status
from omnirelay.smsc import SmscSimulator
from tests.smpp.support import RecordingSink, connector, make_channel, sms


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_verified_tls_link_sends_and_receives_receipts(tmp_path: Path, sink: RecordingSink) -> None:
    cert_file, key_file = self_signed(tmp_path, "smsc")
    async with SmscSimulator(port=0, users={"esme1": "secret"}, receipt_delay=0.01,
                             ssl_context=server_context(cert_file, key_file)) as smsc:
        channel = make_channel(connector("a", smsc.port, tls=True, tls_ca_file=str(cert_file)))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            [result] = await channel.send([sms("+37255500001", "over TLS")])
            assert result.status is None and len(result.provider_refs) == 1
            assert [sub.text for sub in smsc.submissions] == ["over TLS"]
            [ref] = result.provider_refs
            await sink.wait_for(lambda: ref in sink.by_ref())
            assert sink.by_ref()[ref].status == Status.DELIVRD
        finally:
            await channel.stop()


@pytest.mark.parametrize("trusted", ["system store", "another certificate"])
async def test_untrusted_certificate_keeps_the_link_down(tmp_path: Path, sink: RecordingSink,
                                                         trusted: str) -> None:
    cert_file, key_file = self_signed(tmp_path, "smsc")
    other, _ = self_signed(tmp_path, "other")
    async with SmscSimulator(port=0, users={"esme1": "secret"},
                             ssl_context=server_context(cert_file, key_file)) as smsc:
        ca = {} if trusted == "system store" else {"tls_ca_file": str(other)}
        channel = make_channel(connector("a", smsc.port, tls=True, **ca))
        await channel.start(sink)
        try:
            a = channel.connectors["a"]
            async with asyncio.timeout(5):
                while a.last_error is None:
                    await asyncio.sleep(0.02)
            assert "CERTIFICATE_VERIFY_FAILED" in (a.last_error or "")
            assert not a.is_up
            [result] = await channel.send([sms("+37255500001")])
            assert result.status is None and result.retry_after is not None
            assert smsc.submissions == []
        finally:
            await channel.stop()
