"""The same client over HTTPS with mutual TLS, against a real local TLS server."""

from __future__ import annotations

import functools
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.updates.conftest import Lab, installed_library

from pumpguard.pki import CertificateAuthority, CertKind, client_tls_context, server_tls_context
from pumpguard.updates import HttpsFetcher, UpdateClient, UpdateEvent, UpdateRefused, VerifiedUpdate

CA_PASSPHRASE = b"update test ca passphrase"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def credentials(tmp_path: Path) -> dict[str, Path]:
    ca = CertificateAuthority.init(tmp_path / "pki", CA_PASSPHRASE)
    dirs = {
        "server": tmp_path / "creds" / "server",
        "pump": tmp_path / "creds" / "pump",
        "anonymous": tmp_path / "creds" / "anonymous",
    }
    ca.issue(CertKind.SERVER, "updates", sans=["localhost", "127.0.0.1"]).write(dirs["server"])
    ca.issue(CertKind.PUMP, "pump-1").write(dirs["pump"])
    dirs["anonymous"].mkdir(parents=True)
    (dirs["anonymous"] / "ca.pem").write_bytes((dirs["pump"] / "ca.pem").read_bytes())
    return dirs


@pytest.fixture
def https_base(lab: Lab, credentials: dict[str, Path]) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(lab.repo.published_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = server_tls_context(credentials["server"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _client(lab: Lab, cert_dir: Path, base: str, name: str) -> UpdateClient:
    state = lab.directory / "pumps" / name
    UpdateClient.provision(state, lab.repo.trusted_root())
    fetcher = HttpsFetcher(
        client_tls_context(cert_dir), clock=lab.clock, events=lab.events, device_id=name
    )
    return UpdateClient(
        state,
        fetcher,
        clock=lab.clock,
        events=lab.events,
        device_id=name,
        base_url=base,
    )


def test_a_pump_fetches_over_mutual_tls(
    lab: Lab, credentials: dict[str, Path], https_base: str
) -> None:
    path = lab.publish_library(2)
    outcome = _client(lab, credentials["pump"], https_base, "pump-1").fetch(
        path, installed_library(1)
    )
    assert isinstance(outcome, VerifiedUpdate), outcome
    assert outcome.library is not None and outcome.library.version == 2


def test_a_client_without_a_certificate_gets_nothing(
    lab: Lab, credentials: dict[str, Path], https_base: str
) -> None:
    path = lab.publish_library(2)
    outcome = _client(lab, credentials["anonymous"], https_base, "pump-2").fetch(
        path, installed_library(1)
    )
    assert isinstance(outcome, UpdateRefused)
    assert outcome.code is UpdateEvent.REPOSITORY_UNAVAILABLE
    tls = [e for e in lab.events if e.code.startswith("pki.tls.")]
    assert tls and tls[0].device_id == "pump-2", [e.code for e in lab.events]


def test_the_fetcher_refuses_clear_http_and_unverified_contexts(lab: Lab) -> None:
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="verifies the server"):
        HttpsFetcher(unverified)
    state = lab.directory / "pumps" / "pump-3"
    UpdateClient.provision(state, lab.repo.trusted_root())
    client = UpdateClient(
        state,
        HttpsFetcher(ssl.create_default_context()),
        clock=lab.clock,
        events=lab.events,
        device_id="pump-3",
        base_url="http://localhost:1/",
    )
    outcome = client.fetch(lab.publish_library(2), installed_library(1))
    assert isinstance(outcome, UpdateRefused)
    assert outcome.code is UpdateEvent.REPOSITORY_UNAVAILABLE
    assert "HTTPS only" in str(outcome.error)
