"""The update repository's HTTPS listener: ``published/`` to pumps, and to nobody else.

A listener of its own rather than a route of the API: the API's TLS does not ask browsers for
certificates (operators log in with passwords and TOTP), while this one requires a client
certificate from the server's CA, checks it against the CRL (re-read when it changes, so a
revoked pump is refused at its next fetch) and serves only the pump kind. Every refused
handshake or certificate is a security event; TUF still verifies everything served, so this
decides *who* may fetch, never what a pump installs.

Only ``GET``/``HEAD`` of ``metadata/`` and ``targets/`` paths, read through
``updates.DirectorySource`` (no ``..``, no absolute paths); one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pumpguard.clock import Clock
from pumpguard.pki import CertKind, PkiError, peer_identity, server_tls_context
from pumpguard.pki.events import PkiEvent, tls_failure_event
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.updates import DirectorySource

__all__ = ["UpdateListener"]

_MAX_REQUEST = 8_192
_MAX_CONNECTIONS = 256
_READ_TIMEOUT_S = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}


class UpdateListener:
    """Serves ``published_dir`` over HTTPS with mutual TLS to pumps; see the module docstring."""

    def __init__(self, published_dir: Path, clock: Clock, events: SecurityEventSink) -> None:
        self._source = DirectorySource(published_dir)
        self._clock = clock
        self._events = events
        self._server: asyncio.Server | None = None
        self._listener_dir: Path | None = None
        self._crl: Path | None = None
        self._tls: ssl.SSLContext | None = None
        self._crl_mtime = 0.0
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)
        self.port = 0

    async def serve(self, host: str, port: int, listener_dir: Path, crl: Path) -> int:
        """Listen on ``host:port`` with the credential in ``listener_dir``; return the port."""
        self._listener_dir = listener_dir
        self._crl = crl
        self._context()
        self._server = await asyncio.start_server(self._connection, host, port, limit=_MAX_REQUEST)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _context(self) -> ssl.SSLContext:
        assert self._listener_dir is not None and self._crl is not None
        mtime = self._crl.stat().st_mtime
        if self._tls is None or mtime != self._crl_mtime:
            self._tls = server_tls_context(
                self._listener_dir, require_client_cert=True, crl=self._crl
            )
            self._crl_mtime = mtime
        return self._tls

    def _refuse(self, code: PkiEvent, message: str, peer: str) -> None:
        self._events.emit(
            SecurityEvent(
                time_ms=self._clock.now_ms(),
                component=Component.UPDATES,
                code=code,
                severity=Severity.HIGH,
                message=message,
                peer=peer,
            )
        )

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            try:
                await self._exchange(reader, writer, peer)
            except (
                ConnectionError,
                ssl.SSLError,
                TimeoutError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            await writer.start_tls(self._context(), ssl_handshake_timeout=_READ_TIMEOUT_S)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._events.emit(
                tls_failure_event(
                    exc, time_ms=self._clock.now_ms(), component=Component.UPDATES, peer=peer
                )
            )
            return
        try:
            identity = peer_identity(writer.get_extra_info("ssl_object"))
        except PkiError as exc:
            self._refuse(PkiEvent.PEER_BAD_IDENTITY, f"update request refused: {exc}", peer)
            await _respond(writer, 403, b"forbidden\n")
            return
        if identity.kind is not CertKind.PUMP:
            self._refuse(
                PkiEvent.TLS_WRONG_PURPOSE,
                f"update request refused: {identity} is not a pump; only pumps fetch updates",
                str(identity),
            )
            await _respond(writer, 403, b"only pumps fetch updates\n")
            return
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _respond(writer, 400, b"bad request\n")
            return
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"method not allowed\n")
            return
        path = unquote(urlsplit(target).path).lstrip("/")
        data = self._source.read(path) if path.startswith(("metadata/", "targets/")) else None
        if data is None:
            await _respond(writer, 404, b"not found\n")
            return
        await _respond(writer, 200, data, head_only=method == "HEAD")


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, head_only: bool = False
) -> None:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/octet-stream" if status == 200 else "Content-Type: text/plain",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
    if not head_only:
        writer.write(body)
    await writer.drain()
