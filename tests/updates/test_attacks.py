"""Attacks on the update path: each refused by a named check, each logged; and the legacy twin.

The strongest attacker here has taken over the update server: it serves whatever it likes and
holds the online snapshot and timestamp keys (``forge_release``). Where an attack needs the
current state of the pump, the pump first takes a genuine update, as a deployed pump would have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.updates.conftest import (
    LIBRARY_ID,
    Lab,
    installed_library,
    library_bytes,
    library_path,
    parse_library_bytes,
)
from tuf.api.metadata import Metadata, MetaFile, TargetFile

from pumpguard.clinical import LibraryError
from pumpguard.security_events import Component
from pumpguard.updates import (
    AlreadyInstalled,
    EndlessDataError,
    FreezeError,
    InvalidTargetError,
    LegacyLibraryLoader,
    MalformedMetadataError,
    MemorySource,
    MixAndMatchError,
    RollbackError,
    SignatureThresholdError,
    TargetHashMismatchError,
    TargetRollbackError,
    UnknownTargetError,
    UpdateEvent,
    UpdateKind,
    UpdateRefused,
    UpdateRepository,
    VerifiedUpdate,
    forge_release,
    load_signer,
)
from pumpguard.updates.repository import ms_to_datetime

DAY_MS = 86_400_000


def _refused(outcome: object, error: type[Exception], code: UpdateEvent, lab: Lab) -> UpdateRefused:
    assert isinstance(outcome, UpdateRefused), outcome
    assert isinstance(outcome.error, error), outcome.error
    assert outcome.code is code
    logged = lab.events.with_code(code)
    assert logged and logged[-1] is outcome.event
    assert outcome.event.component is Component.UPDATES
    assert outcome.event.device_id == "pump-1"
    return outcome


def _target_file(mirror: MemorySource, version: int) -> str:
    name = library_path(version).rpartition("/")[2]
    return next(p for p in mirror.paths() if p.endswith(f".{name}"))


def _forge(lab: Lab, mirror: MemorySource, version: int, *stolen: str, data: bytes = b"") -> str:
    return forge_release(
        mirror,
        UpdateKind.DRUG_LIBRARY,
        LIBRARY_ID,
        version,
        data or library_bytes(version, heparin_hard_max=400),
        role_signers=[lab.signer(name) for name in stolen],
        online_signers=[lab.signer("snapshot-1"), lab.signer("timestamp-1")],
        now=ms_to_datetime(lab.clock.now_ms()),
    )


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda data: data.replace(b'"hard_max": 40', b'"hard_max": 90'), id="same-length"
        ),
        pytest.param(lambda data: data.replace(b'"hard_max": 40', b'"hard_max": 400'), id="longer"),
        pytest.param(lambda data: data + b" " * 1_000_000, id="endless"),
        pytest.param(lambda data: data[:-10], id="truncated"),
    ],
)
def test_a_tampered_library_file_is_refused(lab: Lab, tamper: Callable[[bytes], bytes]) -> None:
    path = lab.publish_library(2)
    mirror = lab.mirror()
    stored = _target_file(mirror, 2)
    original = mirror.read(stored)
    assert original is not None
    tampered = tamper(original)
    assert tampered != original
    mirror.put(stored, tampered)
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    _refused(outcome, TargetHashMismatchError, UpdateEvent.TARGET_HASH_MISMATCH, lab)


def test_an_unsigned_library_is_refused(lab: Lab) -> None:
    mirror = lab.mirror()
    path = _forge(lab, mirror, 2)
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(
        outcome, SignatureThresholdError, UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET, lab
    )
    assert refused.event.attributes["role"] == "drug-libraries"
    assert "0/2" in str(refused.error)


def test_one_stolen_pharmacist_key_cannot_publish(lab: Lab) -> None:
    mirror = lab.mirror()
    path = _forge(lab, mirror, 2, "drug-libraries-1")
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(
        outcome, SignatureThresholdError, UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET, lab
    )
    assert "1/2" in str(refused.error)


def test_the_online_keys_cannot_stand_in_for_a_pharmacist(lab: Lab) -> None:
    mirror = lab.mirror()
    path = _forge(lab, mirror, 2, "drug-libraries-1", "snapshot-1", "timestamp-1")
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    _refused(outcome, SignatureThresholdError, UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET, lab)


def test_two_stolen_pharmacist_keys_do_meet_the_threshold(lab: Lab) -> None:
    """The control for the two tests above: what refused them is the threshold itself."""
    mirror = lab.mirror()
    path = _forge(lab, mirror, 2, "drug-libraries-1", "drug-libraries-3")
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    assert isinstance(outcome, VerifiedUpdate)
    assert outcome.library is not None


def test_even_a_fully_signed_library_must_validate(lab: Lab) -> None:
    mirror = lab.mirror()
    broken = library_bytes(2).replace(b'"hard_min": 2', b'"hard_min": 900')
    path = _forge(lab, mirror, 2, "drug-libraries-1", "drug-libraries-2", data=broken)
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    _refused(outcome, InvalidTargetError, UpdateEvent.INVALID_TARGET, lab)


def test_a_library_signed_under_another_version_is_refused(lab: Lab) -> None:
    mirror = lab.mirror()
    path = _forge(lab, mirror, 5, "drug-libraries-1", "drug-libraries-2", data=library_bytes(2))
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(outcome, InvalidTargetError, UpdateEvent.INVALID_TARGET, lab)
    assert "v5" in str(refused.error) and "v2" in str(refused.error)


def test_an_older_signed_library_is_refused(lab: Lab) -> None:
    old = lab.publish_library(2)
    new = lab.publish_library(3)
    mirror = lab.mirror()
    client = lab.client(mirror)
    assert isinstance(client.fetch(new, installed_library(2)), VerifiedUpdate)
    outcome = client.fetch(old, installed_library(3))
    refused = _refused(outcome, TargetRollbackError, UpdateEvent.TARGET_ROLLBACK, lab)
    assert "older than installed v3" in str(refused.error)


def test_replaying_older_metadata_is_a_rollback(lab: Lab) -> None:
    lab.publish_library(2)
    old_mirror = lab.mirror()
    new = lab.publish_library(3)
    client = lab.client(lab.mirror())
    assert isinstance(client.fetch(new, installed_library(2)), VerifiedUpdate)
    outcome = lab.client(old_mirror).fetch(library_path(2), installed_library(3))
    refused = _refused(outcome, RollbackError, UpdateEvent.ROLLBACK, lab)
    assert refused.event.attributes["role"] == "timestamp"


def test_a_frozen_mirror_is_refused_once_its_timestamp_expires(lab: Lab) -> None:
    path = lab.publish_library(2)
    frozen = lab.mirror()
    client = lab.client(frozen)
    assert isinstance(client.fetch(path, installed_library(1)), VerifiedUpdate)
    lab.clock.advance(DAY_MS // 2)
    lab.repo.refresh_timestamp()
    newer = lab.publish_library(3)
    assert isinstance(client.fetch(path, installed_library(2)), AlreadyInstalled)
    lab.clock.advance(DAY_MS)
    outcome = client.fetch(newer, installed_library(2))
    refused = _refused(outcome, FreezeError, UpdateEvent.FREEZE, lab)
    assert "expired" in str(refused.error)


def test_a_fresh_pump_refuses_stale_metadata_too(lab: Lab) -> None:
    path = lab.publish_library(2)
    frozen = lab.mirror()
    lab.clock.advance(2 * DAY_MS)
    outcome = lab.client(frozen).fetch(path, installed_library(1))
    _refused(outcome, FreezeError, UpdateEvent.FREEZE, lab)


def test_the_client_follows_the_injected_clock_not_the_wall_clock(lab: Lab) -> None:
    """The metadata expires long before today's date (tests start on 2026-01-01): if ngclient
    used the wall clock here, this genuine update would be refused as a freeze."""
    path = lab.publish_library(2)
    outcome = lab.client(lab.mirror()).fetch(path, installed_library(1))
    assert isinstance(outcome, VerifiedUpdate)
    assert ms_to_datetime(lab.clock.now_ms()).year == 2026


def test_new_snapshot_with_old_library_role_is_mix_and_match(lab: Lab) -> None:
    first = lab.publish_library(2)
    client = lab.client(lab.mirror())
    assert isinstance(client.fetch(first, installed_library(1)), VerifiedUpdate)
    second = lab.publish_library(3)
    mirror = lab.mirror()
    old_role = mirror.read("metadata/2.drug-libraries.json")
    assert old_role is not None
    mirror.put("metadata/3.drug-libraries.json", old_role)
    outcome = lab.client(mirror).fetch(second, installed_library(2))
    refused = _refused(outcome, MixAndMatchError, UpdateEvent.MIX_AND_MATCH, lab)
    assert refused.event.attributes["role"] == "drug-libraries"


def test_new_timestamp_with_old_snapshot_is_mix_and_match(lab: Lab) -> None:
    first = lab.publish_library(2)
    client = lab.client(lab.mirror())
    assert isinstance(client.fetch(first, installed_library(1)), VerifiedUpdate)
    second = lab.publish_library(3)
    mirror = lab.mirror()
    old_snapshot = mirror.read("metadata/2.snapshot.json")
    assert old_snapshot is not None
    mirror.put("metadata/3.snapshot.json", old_snapshot)
    outcome = lab.client(mirror).fetch(second, installed_library(2))
    refused = _refused(outcome, MixAndMatchError, UpdateEvent.MIX_AND_MATCH, lab)
    assert refused.event.attributes["role"] == "snapshot"


def test_a_target_that_is_not_in_the_metadata_is_refused(lab: Lab) -> None:
    lab.publish_library(2)
    mirror = lab.mirror()
    mirror.put("targets/drug-libraries/ward-library-9.json", library_bytes(9))
    outcome = lab.client(mirror).fetch(library_path(9), installed_library(2))
    _refused(outcome, UnknownTargetError, UpdateEvent.UNKNOWN_TARGET, lab)


def test_a_mirror_without_the_online_keys_cannot_even_re_date_metadata(lab: Lab) -> None:
    path = lab.publish_library(2)
    mirror = lab.mirror()
    timestamp = mirror.read("metadata/timestamp.json")
    assert timestamp is not None
    mirror.put("metadata/timestamp.json", timestamp.replace(b'"2026-01-02', b'"2027-01-02'))
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(
        outcome, SignatureThresholdError, UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET, lab
    )
    assert refused.event.attributes["role"] == "timestamp"


def test_legacy_loader_accepts_every_one_of_these(lab: Lab) -> None:
    """The legacy twin: unsigned, tampered and older libraries all load, silently."""
    loader = LegacyLibraryLoader()
    installed = parse_library_bytes(library_bytes(3))
    tampered = loader.load(library_bytes(4, heparin_hard_max=400), installed)
    assert tampered.library.version == 4 and not tampered.downgrade
    older = loader.load(library_bytes(2), installed)
    assert older.library.version == 2 and older.downgrade
    assert not list(lab.events)
    with pytest.raises(LibraryError):
        loader.load(b"not a library")


def test_the_top_level_targets_role_cannot_sign_a_library_itself(lab: Lab) -> None:
    """Even holding both offline targets keys, listing a library outside the delegated role
    (which ngclient would search first) is refused by the client."""
    mirror = lab.mirror()
    data = library_bytes(2, heparin_hard_max=400)
    path = library_path(2)
    targets = Metadata.from_bytes(mirror.read("metadata/1.targets.json") or b"")
    info = TargetFile.from_data(path, data, ["sha256"])
    info.unrecognized_fields["custom"] = {"kind": "drug-library", "name": LIBRARY_ID, "version": 2}
    targets.signed.targets[path] = info
    targets.signed.version = 2
    targets.signatures.clear()
    for key in ("targets-1", "targets-2"):
        targets.sign(lab.signer(key), append=True)
    mirror.put("metadata/2.targets.json", targets.to_bytes())
    mirror.put(f"targets/drug-libraries/{info.hashes['sha256']}.{path.rpartition('/')[2]}", data)
    online = [lab.signer("snapshot-1"), lab.signer("timestamp-1")]
    snapshot = Metadata.from_bytes(mirror.read("metadata/1.snapshot.json") or b"")
    snapshot.signed.meta["targets.json"] = MetaFile(2)
    snapshot.signed.version = 2
    snapshot.signatures.clear()
    snapshot.sign(online[0])
    mirror.put("metadata/2.snapshot.json", snapshot.to_bytes())
    timestamp = Metadata.from_bytes(mirror.read("metadata/timestamp.json") or b"")
    timestamp.signed.snapshot_meta = MetaFile(2)
    timestamp.signed.version = 2
    timestamp.sign(online[1])
    mirror.put("metadata/timestamp.json", timestamp.to_bytes())
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(outcome, InvalidTargetError, UpdateEvent.INVALID_TARGET, lab)
    assert "top-level targets" in str(refused.error)


def test_an_endless_timestamp_is_cut_off(lab: Lab) -> None:
    path = lab.publish_library(2)
    mirror = lab.mirror()
    mirror.put("metadata/timestamp.json", b"{" + b" " * 10_000_000)
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    _refused(outcome, EndlessDataError, UpdateEvent.ENDLESS_DATA, lab)


def test_a_root_signed_by_the_attackers_own_keys_is_refused(lab: Lab, tmp_path: Path) -> None:
    path = lab.publish_library(2)
    rogue = UpdateRepository.create(
        tmp_path / "rogue", clock=lab.clock, passphrase_for=lambda name: b"attacker passphrase"
    )
    mirror = lab.mirror()
    rogue_root = Metadata.from_bytes(rogue.trusted_root())
    rogue_root.signed.version = 2
    rogue_root.signatures.clear()
    for key in ("root-1", "root-2", "root-3"):
        rogue_root.sign(load_signer(rogue.keys_dir, key, b"attacker passphrase"), append=True)
    mirror.put("metadata/2.root.json", rogue_root.to_bytes())
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    refused = _refused(
        outcome, SignatureThresholdError, UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET, lab
    )
    assert refused.event.attributes["role"] == "root"


def test_garbled_metadata_is_malformed(lab: Lab) -> None:
    path = lab.publish_library(2)
    mirror = lab.mirror()
    mirror.put("metadata/2.snapshot.json", b'{"signed": "nonsense"}')
    outcome = lab.client(mirror).fetch(path, installed_library(1))
    _refused(outcome, MalformedMetadataError, UpdateEvent.MALFORMED_METADATA, lab)
