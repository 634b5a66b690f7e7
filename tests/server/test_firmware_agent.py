"""The pump shell's firmware pieces that need no stack: the self-test of a booted image, the
version text status telemetry carries, and the rollback acknowledgement the server reads."""

from __future__ import annotations

from pumpguard.server.update_agent import (
    FIRMWARE_PRODUCT,
    firmware_image,
    firmware_self_test,
    firmware_version_text,
    parse_firmware_version,
    parse_install_ack,
)
from pumpguard.transport import AckOutcome
from pumpguard.updates import TargetDescription, UpdateKind


def _target(version: int) -> TargetDescription:
    path = f"firmware/{FIRMWARE_PRODUCT}-{version}.bin"
    return TargetDescription(path, UpdateKind.FIRMWARE, FIRMWARE_PRODUCT, version, 1, "0" * 64)


def test_the_self_test_passes_only_an_image_built_as_what_it_was_signed_as() -> None:
    assert firmware_self_test(firmware_image(FIRMWARE_PRODUCT, 2, b"code"), _target(2)) is None
    stale = firmware_self_test(firmware_image(FIRMWARE_PRODUCT, 1, b"code"), _target(2))
    assert stale is not None and "signed product and version" in stale
    other = firmware_self_test(firmware_image("other-pump", 2), _target(2))
    assert other is not None and "signed product and version" in other
    assert firmware_self_test(b"\x7fELF garbage", _target(2)) == "the image has no firmware header"
    assert firmware_self_test(b"", _target(2)) == "the image has no firmware header"


def test_the_reported_firmware_version_round_trips_and_rejects_others() -> None:
    text = firmware_version_text(FIRMWARE_PRODUCT, 12)
    assert text == "pumpguard-sim v12"
    assert parse_firmware_version(text, FIRMWARE_PRODUCT) == 12
    assert parse_firmware_version(text, "other-pump") is None
    assert parse_firmware_version("pumpguard-sim 1.0", FIRMWARE_PRODUCT) is None
    assert parse_firmware_version("pumpguard-sim v", FIRMWARE_PRODUCT) is None
    assert parse_firmware_version(None, FIRMWARE_PRODUCT) is None


def test_a_rollback_acknowledgement_is_read_as_a_rollback_not_a_refusal() -> None:
    ack = parse_install_ack(AckOutcome.REJECTED, "rolled-back v1: self-test of v2 failed: x")
    assert ack is not None
    assert (ack.rolled_back, ack.version, ack.refusal_code, ack.installed) == (
        True,
        1,
        None,
        False,
    )
    refused = parse_install_ack(AckOutcome.REJECTED, "updates.target_hash_mismatch: bad")
    assert refused is not None and not refused.rolled_back
    assert refused.refusal_code == "updates.target_hash_mismatch"
