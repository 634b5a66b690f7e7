"""The generated Mosquitto configuration, checked without the binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from pumpguard.transport import MosquittoSettings, render_mosquitto_conf, write_mosquitto_config


def _options(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_listener_requires_certificates_and_uses_the_cn(tmp_path: Path) -> None:
    conf = write_mosquitto_config(
        tmp_path, MosquittoSettings(cert_dir=Path("/etc/pg/broker"), crl=Path("/etc/pg/crl.pem"))
    )
    options = _options(conf.read_text())
    listener = options.index("listener 8883 127.0.0.1")
    for required in (
        "allow_anonymous false",
        f"acl_file {(tmp_path / 'mosquitto.acl').resolve()}",
        "retain_available false",
    ):
        assert options.index(required) < listener
    for required in (
        "max_qos 1",
        "cafile /etc/pg/broker/ca.pem",
        "certfile /etc/pg/broker/cert.pem",
        "keyfile /etc/pg/broker/key.pem",
        "crlfile /etc/pg/crl.pem",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
    ):
        assert options.index(required) > listener
    assert "user pumpguard-server" in (tmp_path / "mosquitto.acl").read_text()


def test_settings_that_would_corrupt_the_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TCP port"):
        render_mosquitto_conf(
            MosquittoSettings(cert_dir=tmp_path, crl=tmp_path / "crl.pem", port=0),
            tmp_path / "acl",
        )
    with pytest.raises(ValueError, match="cannot be written"):
        render_mosquitto_conf(
            MosquittoSettings(cert_dir=tmp_path / "x\nlistener 1883", crl=tmp_path / "crl.pem"),
            tmp_path / "acl",
        )
    with pytest.raises(ValueError, match="not a user name"):
        render_mosquitto_conf(
            MosquittoSettings(cert_dir=tmp_path, crl=tmp_path / "c", run_as_user="root\nx"),
            tmp_path / "acl",
        )
