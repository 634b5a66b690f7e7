"""MLLP endpoints over asyncio: a listener for orders and a sender for acknowledgements and
reports, MLLP inside TLS with the EHR authenticated by its certificate.

Plain MLLP exists only for the ``legacy`` profile, chosen explicitly, to reproduce the
cleartext interfaces real hospitals still run (and the order-tampering attack on them). The
TLS handshake is driven here rather than by ``asyncio.start_server(ssl=...)`` so that a refused
peer (no certificate, foreign CA, wrong kind) becomes a security event instead of a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from pumpguard.clock import Clock, SystemClock
from pumpguard.interop.codes import InteropEvent
from pumpguard.interop.mllp import DEFAULT_MAX_FRAME, Frame, FrameProblem, MllpDecoder, encode_frame
from pumpguard.pki import (
    CertKind,
    PeerIdentity,
    PeerIdentityError,
    peer_identity,
    tls_failure_event,
)
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity

__all__ = [
    "DeliveryError",
    "Endpoint",
    "MllpConnection",
    "MllpServer",
    "PeerInfo",
    "TransportProfile",
    "send_message",
]

_READ_CHUNK = 65536


class TransportProfile(StrEnum):
    SECURE = "secure"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """``mllps://host:port`` (MLLP in TLS) or, legacy only, ``mllp://host:port``."""

    host: str
    port: int
    tls: bool = True

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mllps", "mllp"):
            raise ValueError(f"{url!r}: the scheme must be mllps:// (or mllp:// in legacy)")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{url!r}: give a host and a port, e.g. mllps://ehr.example:2575")
        return cls(parts.hostname, port, parts.scheme == "mllps")

    def __str__(self) -> str:
        return f"{'mllps' if self.tls else 'mllp'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who is on the other end: its address and, over TLS, its certified identity."""

    address: str
    identity: PeerIdentity | None

    def __str__(self) -> str:
        return str(self.identity) if self.identity is not None else self.address


FrameHandler = Callable[[str, PeerInfo], Awaitable[str | None]]
ProblemHandler = Callable[[FrameProblem, PeerInfo], str | None]


class DeliveryError(Exception):
    """A message could not be delivered to an MLLP endpoint (refused, unreachable, timed out)."""


def _check_profile(profile: TransportProfile, tls_context: ssl.SSLContext | None) -> None:
    if profile is TransportProfile.SECURE:
        if tls_context is None:
            raise ValueError("the secure profile runs MLLP only inside TLS: give a TLS context")
        if tls_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the secure profile requires the peer's certificate")


class _HeldProtocol(asyncio.StreamReaderProtocol):
    """Reading starts paused, so that no byte of the TLS handshake can land in the plain
    stream buffer before ``start_tls`` takes the connection over."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        super().connection_made(transport)


class MllpServer:
    """Accepts MLLP connections; every frame goes to ``handler``, whose answer is sent back on
    the same connection. A frame must be complete within ``read_timeout`` of its first byte;
    a connection idle for ``idle_timeout`` is closed."""

    def __init__(
        self,
        handler: FrameHandler,
        *,
        profile: TransportProfile,
        tls_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        read_timeout: float = 30.0,
        idle_timeout: float = 300.0,
        handshake_timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        allowed_kinds: frozenset[CertKind] = frozenset({CertKind.EHR}),
        max_connections: int = 32,
        on_problem: ProblemHandler | None = None,
        events: SecurityEventSink | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_profile(profile, tls_context)
        self.profile = profile
        self._handler = handler
        self._tls = tls_context
        self._host = host
        self._port = port
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._handshake_timeout = handshake_timeout
        self._max_frame = max_frame
        self._allowed = allowed_kinds
        self._on_problem = on_problem
        self._events = events
        self._clock = clock or SystemClock()
        self._server: asyncio.Server | None = None
        self._max_connections = max_connections
        self._open = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            return _HeldProtocol(asyncio.StreamReader(), self._serve)

        self._server = await loop.create_server(protocol, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _emit(
        self, code: str, severity: Severity, message: str, peer: str | None, **attrs: str
    ) -> None:
        if self._events is not None:
            self._events.emit(
                SecurityEvent(
                    time_ms=self._clock.now_ms(),
                    component=Component.INTEROP,
                    code=code,
                    severity=severity,
                    message=message,
                    peer=peer,
                    attributes=attrs,
                )
            )

    async def _authenticate(self, writer: asyncio.StreamWriter, address: str) -> PeerInfo | None:
        if self._tls is None:
            transport = writer.transport
            if isinstance(transport, asyncio.ReadTransport):
                transport.resume_reading()
            self._emit(
                InteropEvent.CLEARTEXT,
                Severity.MEDIUM,
                "plain MLLP connection accepted (legacy profile): orders can be read and altered",
                address,
            )
            return PeerInfo(address, None)
        try:
            await asyncio.wait_for(writer.start_tls(self._tls), self._handshake_timeout)
        except (ssl.SSLError, ConnectionError) as exc:
            if self._events is not None:
                self._events.emit(
                    tls_failure_event(
                        exc,
                        time_ms=self._clock.now_ms(),
                        component=Component.INTEROP,
                        peer=address,
                    )
                )
            return None
        except (TimeoutError, OSError) as exc:
            self._emit(
                InteropEvent.UNAUTHENTICATED,
                Severity.MEDIUM,
                f"TLS handshake did not complete: {exc or type(exc).__name__}",
                address,
            )
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            identity = peer_identity(ssl_object)
        except PeerIdentityError as exc:
            self._emit(InteropEvent.UNAUTHENTICATED, Severity.HIGH, str(exc), address)
            return None
        if identity.kind not in self._allowed:
            allowed = ", ".join(sorted(k.value for k in self._allowed))
            self._emit(
                InteropEvent.WRONG_PEER_KIND,
                Severity.HIGH,
                f"{identity} may not send orders (allowed: {allowed})",
                address,
                kind=identity.kind.value,
            )
            return None
        return PeerInfo(address, identity)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        address = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "?"
        if self._open >= self._max_connections:
            self._emit(
                InteropEvent.TOO_MANY_CONNECTIONS,
                Severity.MEDIUM,
                f"connection refused: {self._open} already open (at most {self._max_connections})",
                address,
            )
            writer.close()
            return
        self._open += 1
        try:
            peer = await self._authenticate(writer, address)
            if peer is not None:
                await self._conversation(reader, writer, peer)
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerInfo
    ) -> None:
        """Read frames until the peer closes, stays idle too long, or takes longer than
        ``read_timeout`` to finish a frame it started (however slowly it trickles bytes)."""
        loop = asyncio.get_running_loop()
        decoder = MllpDecoder(self._max_frame)
        deadline: float | None = None
        while True:
            wait = self._idle_timeout if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(_READ_CHUNK), wait)
            except TimeoutError:
                if decoder.pending:
                    self._emit(
                        InteropEvent.READ_TIMEOUT,
                        Severity.MEDIUM,
                        f"frame not finished within {self._read_timeout} s; connection dropped",
                        str(peer),
                    )
                return
            if not data:
                return
            items = decoder.feed(data)
            if any(isinstance(item, Frame) for item in items) or not decoder.pending:
                deadline = None
            if decoder.pending and deadline is None:
                deadline = loop.time() + self._read_timeout
            for item in items:
                reply = await self._dispatch(item, peer)
                if reply is not None:
                    writer.write(encode_frame(reply))
                    await writer.drain()

    async def _dispatch(self, item: Frame | FrameProblem, peer: PeerInfo) -> str | None:
        try:
            if isinstance(item, Frame):
                return await self._handler(item.text, peer)
            if self._on_problem is not None:
                return self._on_problem(item, peer)
        except Exception as exc:
            self._emit(
                InteropEvent.HANDLER_FAILED,
                Severity.HIGH,
                f"message handler failed: {type(exc).__name__}: {exc}",
                str(peer),
            )
            raise ConnectionAbortedError("handler failed") from exc
        return None


async def _open(
    endpoint: Endpoint,
    profile: TransportProfile,
    tls_context: ssl.SSLContext | None,
    timeout: float,
    peer_kinds: frozenset[CertKind] | None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if endpoint.tls:
        if tls_context is None:
            raise ValueError(f"{endpoint} needs a TLS context")
    elif profile is TransportProfile.SECURE:
        raise ValueError(f"{endpoint} is plain MLLP, which only the legacy profile may use")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=tls_context if endpoint.tls else None,
                server_hostname=endpoint.host if endpoint.tls else None,
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise DeliveryError(f"cannot reach {endpoint}: {exc or type(exc).__name__}") from None
    if endpoint.tls and peer_kinds is not None:
        try:
            identity = peer_identity(writer.get_extra_info("ssl_object"))
        except PeerIdentityError as exc:
            identity = None
            problem = str(exc)
        if identity is None or identity.kind not in peer_kinds:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            who = problem if identity is None else f"{identity} is not an accepted peer"
            raise DeliveryError(f"{endpoint}: {who}")
    return reader, writer


async def _reply(reader: asyncio.StreamReader, decoder: MllpDecoder) -> str | None:
    while True:
        data = await reader.read(_READ_CHUNK)
        if not data:
            return None
        for item in decoder.feed(data):
            if isinstance(item, Frame):
                return item.text


class MllpConnection:
    """One kept connection to an MLLP endpoint: send a message, wait for its reply, send the
    next. What a sender of a stream of reports (IPEC, DEC, ACM) holds open; a failure closes
    it, and the next ``exchange`` connects again."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        profile: TransportProfile,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer_kinds: frozenset[CertKind] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._profile = profile
        self._tls = tls_context
        self._timeout = timeout
        self._max_frame = max_frame
        self._peer_kinds = peer_kinds
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @property
    def connected(self) -> bool:
        return self._streams is not None

    async def exchange(self, message: str) -> str:
        """Send one message and return the reply frame; raises ``DeliveryError``."""
        if self._streams is None:
            self._streams = await _open(
                self.endpoint, self._profile, self._tls, self._timeout, self._peer_kinds
            )
        reader, writer = self._streams
        try:
            writer.write(encode_frame(message))
            await writer.drain()
            async with asyncio.timeout(self._timeout):
                reply = await _reply(reader, MllpDecoder(self._max_frame))
        except TimeoutError:
            await self.close()
            raise DeliveryError(
                f"{self.endpoint} sent no acknowledgement within {self._timeout} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise DeliveryError(f"delivery to {self.endpoint} failed: {exc}") from None
        if reply is None:
            await self.close()
            raise DeliveryError(f"{self.endpoint} closed the connection without an answer")
        return reply

    async def close(self) -> None:
        """Close, waiting at most a second for the TLS close_notify exchange (asyncio waits
        30 s by default), so that stopping a server is never held by a slow peer."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(streams[1].wait_closed(), 1.0)
            streams[1].transport.abort()


async def send_message(
    endpoint: Endpoint,
    message: str,
    *,
    profile: TransportProfile,
    tls_context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    max_frame: int = DEFAULT_MAX_FRAME,
    expect_reply: bool = True,
    peer_kinds: frozenset[CertKind] | None = None,
) -> str | None:
    """Open a connection, send one framed message and return the first framed reply (None if
    none is expected, or the peer closes without one). ``peer_kinds`` refuses a TLS peer whose
    certificate names another kind of party (e.g. anything but the EHR)."""
    reader, writer = await _open(endpoint, profile, tls_context, timeout, peer_kinds)
    try:
        writer.write(encode_frame(message))
        await writer.drain()
        if not expect_reply:
            return None
        async with asyncio.timeout(timeout):
            return await _reply(reader, MllpDecoder(max_frame))
    except TimeoutError:
        raise DeliveryError(f"{endpoint} sent no acknowledgement within {timeout} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"delivery to {endpoint} failed: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
