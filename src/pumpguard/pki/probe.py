"""Probe a live TLS listener (ours, Mosquitto, an MLLP gateway) for the project's TLS policy.

``tls_configuration_problems`` checks a context we built; this checks what a server actually
accepts on the wire, which is what matters for a broker configured by hand. Each check opens
its own connection and tries something the policy forbids (an old protocol, a cipher without
forward secrecy or AEAD, no client certificate); a listener passes when it refuses all of them
and still accepts a well-behaved client.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pumpguard.pki.authority import CA_BUNDLE_FILE
from pumpguard.pki.tls import client_tls_context

__all__ = ["ProbeCheck", "ProbeOutcome", "ProbeResult", "probe_tls_endpoint"]

# TLS 1.2 suites the policy forbids: static-RSA key exchange, CBC modes (no AEAD), and CBC with
# ECDHE (forward secret but not AEAD). Names are OpenSSL's.
_FORBIDDEN_TLS12 = (
    "AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:"
    "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:DES-CBC3-SHA:@SECLEVEL=0"
)


class ProbeCheck(StrEnum):
    BASELINE = "mutual TLS with our certificate is accepted"
    TLS10 = "TLS 1.0 is refused"
    TLS11 = "TLS 1.1 is refused"
    WEAK_TLS12_CIPHERS = "TLS 1.2 without ECDHE+AEAD is refused"
    NO_CLIENT_CERT = "a client without a certificate is refused"


class ProbeOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ProbeResult:
    check: ProbeCheck
    outcome: ProbeOutcome
    detail: str


def _legacy_context(version: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    ctx.set_ciphers(ciphers)
    return ctx


@dataclass(frozen=True)
class _Attempt:
    accepted: bool
    detail: str


def _attempt(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    server_hostname: str | None,
    timeout: float,
    *,
    await_refusal: bool,
) -> _Attempt:
    """Connect once. With ``await_refusal``, read briefly after the handshake: a TLS 1.3 server
    refuses a client certificate (or its absence) only after the client has finished."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {host}:{port}: {exc}") from None
    with contextlib.closing(raw):
        try:
            with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                version, cipher = tls.version(), tls.cipher()
                if await_refusal:
                    tls.settimeout(min(timeout, 1.0))
                    try:
                        if tls.recv(1) == b"":
                            return _Attempt(False, "server closed the connection")
                    except TimeoutError:
                        pass
                name = cipher[0] if cipher else "?"
                return _Attempt(True, f"accepted {version} with {name}")
        except ssl.SSLError as exc:
            return _Attempt(False, f"refused: {exc.reason or exc}")
        except (ConnectionError, OSError) as exc:
            return _Attempt(False, f"refused: connection dropped ({exc})")


def probe_tls_endpoint(
    host: str,
    port: int,
    cert_dir: Path,
    *,
    server_hostname: str | None = None,
    expect_client_cert: bool = True,
    timeout: float = 5.0,
) -> list[ProbeResult]:
    """Run every check against ``host:port``; ``cert_dir`` holds a valid client credential.

    Raises ``ConnectionError`` when nothing listens there. A check the local OpenSSL cannot
    even attempt (TLS 1.0 compiled out) is ``SKIPPED``, never passed.
    """
    name = server_hostname or host
    results: list[ProbeResult] = []

    baseline = _attempt(host, port, client_tls_context(cert_dir), name, timeout, await_refusal=True)
    outcome = ProbeOutcome.PASSED if baseline.accepted else ProbeOutcome.FAILED
    results.append(ProbeResult(ProbeCheck.BASELINE, outcome, baseline.detail))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = (
            (ProbeCheck.TLS10, ssl.TLSVersion.TLSv1, ssl.HAS_TLSv1),
            (ProbeCheck.TLS11, ssl.TLSVersion.TLSv1_1, ssl.HAS_TLSv1_1),
        )
    for check, version, available in legacy:
        if not available:
            results.append(ProbeResult(check, ProbeOutcome.SKIPPED, "not in the local OpenSSL"))
            continue
        ctx = _legacy_context(version, "ALL:@SECLEVEL=0")
        results.append(
            _refusal(check, _attempt(host, port, ctx, name, timeout, await_refusal=False))
        )

    weak = _legacy_context(ssl.TLSVersion.TLSv1_2, _FORBIDDEN_TLS12)
    results.append(
        _refusal(
            ProbeCheck.WEAK_TLS12_CIPHERS,
            _attempt(host, port, weak, name, timeout, await_refusal=False),
        )
    )

    if expect_client_cert:
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.load_verify_locations(cafile=str(cert_dir / CA_BUNDLE_FILE))
        anonymous.check_hostname = False
        attempt = _attempt(host, port, anonymous, name, timeout, await_refusal=True)
        results.append(_refusal(ProbeCheck.NO_CLIENT_CERT, attempt))
    return results


def _refusal(check: ProbeCheck, attempt: _Attempt) -> ProbeResult:
    outcome = ProbeOutcome.FAILED if attempt.accepted else ProbeOutcome.PASSED
    return ProbeResult(check, outcome, attempt.detail)
