"""Fixtures for the PKI tests: a fresh CA per test and a real TLS handshake over a socketpair."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    peer_identity,
)
from pumpguard.security_events import SecurityEventLog

PASSPHRASE = b"correct horse battery staple"


@dataclass
class Handshake:
    """What each side saw; a refused handshake leaves ``server_error`` set."""

    server_error: BaseException | None = None
    client_error: BaseException | None = None
    identity: PeerIdentity | None = None
    version: str | None = None
    client_received: bytes | None = None

    @property
    def succeeded(self) -> bool:
        return self.server_error is None and self.client_received == b"hello"


def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    *,
    server_hostname: str | None = "localhost",
) -> Handshake:
    """Run both ends of one TLS connection; the client reads so TLS 1.3 alerts surface."""
    server_sock, client_sock = socket.socketpair()
    # Guards against a hang if a bug stops one side from answering; never part of an assertion.
    server_sock.settimeout(10)
    client_sock.settimeout(10)
    result = Handshake()

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                result.identity = peer_identity(tls) if tls.getpeercert(True) else None
                result.version = tls.version()
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError) as exc:
            result.server_error = exc
            server_sock.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            result.client_received = tls.recv(5)
    except (ssl.SSLError, OSError) as exc:
        result.client_error = exc
        client_sock.close()
    thread.join()
    return result


@contextlib.contextmanager
def tls_listener(ctx: ssl.SSLContext) -> Iterator[int]:
    """Serve TLS on 127.0.0.1 one connection at a time, as a broker would, until closed."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls, contextlib.suppress(OSError):
                    while tls.recv(1024):
                        pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join()


@pytest.fixture
def events() -> SecurityEventLog:
    return SecurityEventLog()


@pytest.fixture
def ca(tmp_path: Path, events: SecurityEventLog) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "pki", PASSPHRASE, events=events)


@pytest.fixture
def issue_to(ca: CertificateAuthority, tmp_path: Path) -> Callable[..., Path]:
    """Issue a credential and write it to its own directory, returned."""

    def issue(kind: CertKind, ident: str, **kwargs: object) -> Path:
        directory = tmp_path / "creds" / f"{kind}-{ident}-{len(ca.certificates())}"
        ca.issue(kind, ident, **kwargs).write(directory)  # type: ignore[arg-type]
        return directory

    return issue


@pytest.fixture
def server_dir(issue_to: Callable[..., Path]) -> Path:
    return issue_to(CertKind.SERVER, "broker", sans=["localhost", "127.0.0.1"])
