"""``Client`` over https: a TLS front (the way a server sits behind a terminating
proxy) with a certificate from a test CA, in front of a real node."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from akidb.server.client import Client
from akidb.server.errors import TransportError


def _certificate(subject: str, issuer_key, issuer_name, key, *, ca: bool,
                 ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                         subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("akidb test CA", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("127.0.0.1", ca_key, ca.subject, key, ca=False, ip="127.0.0.1")
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (out / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (out / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return {"ca": out / "ca.pem", "cert": out / "server.pem", "key": out / "server.key"}


@pytest.fixture
def https_url(tls_files, akidb_cluster) -> Iterator[str]:
    """https://127.0.0.1:PORT, terminating TLS and forwarding to the node's REST port."""
    upstream = akidb_cluster.nodes[0].rest_url.removeprefix("http://").rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                raw.settimeout(10)
                client = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()  # the client refused our certificate
                continue
            backend = socket.create_connection((upstream[0], int(upstream[1])))
            for a, b in ((client, backend), (backend, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def test_https_with_a_ca_bundle(https_url, tls_files, akidb_cluster):
    key = akidb_cluster.nodes[0].admin_key
    with Client(https_url, key, ca_bundle=str(tls_files["ca"]), timeout=10) as client:
        assert client.health() == {"status": "ok"}
        assert isinstance(client.list_tenants(), list)  # authenticated calls too


def test_certificates_are_verified_by_default(https_url, akidb_cluster):
    with Client(https_url, akidb_cluster.nodes[0].admin_key, timeout=10, retries=0) as client:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            client.health()


def test_verification_can_be_turned_off_explicitly(https_url, akidb_cluster):
    with Client(https_url, akidb_cluster.nodes[0].admin_key, timeout=10, verify=False) as c:
        assert c.health() == {"status": "ok"}


def test_bad_urls_and_bundles_are_refused(tmp_path):
    with pytest.raises(ValueError, match="https://"):
        Client("ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="ca_bundle is for https"):
        Client("http://127.0.0.1:1", ca_bundle="x.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load CA bundle"):
        Client("https://127.0.0.1:1", ca_bundle=str(tmp_path / "junk.pem"))


def test_a_path_in_the_url_prefixes_every_route():
    """A server behind a proxy that mounts it under /akidb: the client's routes go there."""
    import http.server

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's handler name
            seen.append(self.path)
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/akidb/"
        with Client(url, timeout=10) as client:
            assert client.health() == {"status": "ok"}
        assert seen == ["/akidb/health"]
    finally:
        server.shutdown()
        server.server_close()
