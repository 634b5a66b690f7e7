"""The live TLS probe against real localhost listeners: ours passes, a lax one is caught."""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from pumpguard.pki import CertKind, server_tls_context
from pumpguard.pki.probe import ProbeCheck, ProbeOutcome, ProbeResult, probe_tls_endpoint

from .conftest import tls_listener

IssueTo = Callable[..., Path]


def _by_check(results: list[ProbeResult]) -> dict[ProbeCheck, ProbeResult]:
    return {r.check: r for r in results}


def test_our_server_context_passes_every_check(issue_to: IssueTo) -> None:
    server = issue_to(CertKind.SERVER, "localhost", sans=["localhost", "127.0.0.1"])
    pump = issue_to(CertKind.PUMP, "PUMP-0001")
    with tls_listener(server_tls_context(server)) as port:
        results = _by_check(probe_tls_endpoint("127.0.0.1", port, pump))
    assert set(results) == set(ProbeCheck)
    for check, result in results.items():
        assert result.outcome in (ProbeOutcome.PASSED, ProbeOutcome.SKIPPED), (check, result)
    assert results[ProbeCheck.BASELINE].outcome is ProbeOutcome.PASSED
    assert "TLSv1.3" in results[ProbeCheck.BASELINE].detail
    assert results[ProbeCheck.WEAK_TLS12_CIPHERS].outcome is ProbeOutcome.PASSED


def test_a_lax_server_is_reported(issue_to: IssueTo) -> None:
    server = issue_to(CertKind.SERVER, "localhost", sans=["127.0.0.1"])
    pump = issue_to(CertKind.PUMP, "PUMP-0002")
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.load_cert_chain(server / "cert.pem", server / "key.pem")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    lax.set_ciphers("ALL:@SECLEVEL=0")
    with tls_listener(lax) as port:
        results = _by_check(probe_tls_endpoint("127.0.0.1", port, pump))
    assert results[ProbeCheck.BASELINE].outcome is ProbeOutcome.PASSED
    assert results[ProbeCheck.NO_CLIENT_CERT].outcome is ProbeOutcome.FAILED
    assert results[ProbeCheck.WEAK_TLS12_CIPHERS].outcome is ProbeOutcome.FAILED
    if ssl.HAS_TLSv1_1:
        assert results[ProbeCheck.TLS11].outcome is ProbeOutcome.FAILED


def test_nothing_listening_is_an_error_not_a_pass(issue_to: IssueTo) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0003")
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot connect"):
        probe_tls_endpoint("127.0.0.1", port, pump, timeout=2)
