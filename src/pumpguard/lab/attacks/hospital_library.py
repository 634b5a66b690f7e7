"""Attacks on the drug-library and firmware update path (issue 6): the advisories' unsigned
pushes and tampered data sets, and the TUF threat model's rollback, key compromise and freeze.

Legacy profile: the hospital pushes libraries to the pump unsigned and the pump loads them with
``updates.LegacyLibraryLoader`` (whoever can put a file in front of the pump decides its limits,
as the advisories describe); the legacy firmware loader writes any image into the spare slot and
boots it. Secure profile: the hospital publishes through its TUF repository (two pharmacists
sign each library, maker and biomedical engineering each firmware image) and the pump installs
only what ``updates.UpdateClient`` verified, through ``StagedUpdate``. The attacker either sits
on the network between the repository and the pump (it serves the pump a mirror of its own) or,
where the advisory says so, controls the update server: it then holds the online snapshot and
timestamp keys (``updates.forge_release``).

What every entry measures, after the attack: the hard maximum of the prescribed drug the pump
now enforces against the hospital's, and what a tenfold keypad slip infuses in the next hour
(``Ward.slip_at_bedside``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pumpguard.clinical import DrugLibrary, LibraryError
from pumpguard.lab.attacks.hospital_ward import (
    SLIP_FACTOR,
    HospitalAttack,
    Outcome,
    Ward,
    library_bytes,
    library_with_limits,
)
from pumpguard.updates import (
    ApplyDecision,
    FetchOutcome,
    FirmwareSlots,
    Installed,
    LegacyLibraryLoader,
    MemorySource,
    Slot,
    SourceFetcher,
    StagedUpdate,
    UpdateClient,
    UpdateKind,
    UpdateRefused,
    UpdateRepository,
    VerifiedUpdate,
    forge_release,
    load_signer,
)
from pumpguard.updates.repository import ms_to_datetime

__all__ = [
    "FIRMWARE_PRODUCT",
    "LibraryRollback",
    "StaleMetadata",
    "StolenSigningKey",
    "TamperedLibrary",
    "UnsignedFirmware",
    "UnsignedLibraryPush",
]

FIRMWARE_PRODUCT = "lvp-main"
_TEN = Decimal(SLIP_FACTOR)


def _passphrase(key_name: str) -> bytes:
    return f"ward key ceremony passphrase of {key_name}".encode()


class _UpdatePath:
    """The hospital's update path to the ward's pump, in the ward's profile.

    Secure: a TUF repository in the ward's work directory, the pump's ``UpdateClient`` with the
    repository's root as its trust anchor, and ``StagedUpdate`` applying what it verifies.
    Legacy: a push straight into ``LegacyLibraryLoader``.
    """

    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        self.installed_version: int | None = None
        self.repo: UpdateRepository | None = None
        self._client: UpdateClient | None = None
        if ward.secure:
            self.repo = UpdateRepository.create(
                ward.workdir / "repository",
                clock=ward.clock,
                passphrase_for=_passphrase,
                events=ward.events,
            )
            state = ward.workdir / "pump-update-state"
            UpdateClient.provision(state, self.repo.trusted_root())
            self._state = state

    @property
    def library_id(self) -> str:
        return self.ward.legitimate.library_id

    def signer(self, name: str) -> Any:
        assert self.repo is not None
        return load_signer(self.repo.keys_dir, name, _passphrase(name))

    def mirror(self) -> MemorySource:
        """What the hospital serves right now (an attacker may keep a copy of it)."""
        assert self.repo is not None
        return MemorySource.from_directory(self.repo.published_dir)

    def release(self, library: DrugLibrary) -> str:
        """The hospital releases ``library``: signed by two pharmacists and published (secure),
        or nothing to prepare (legacy: it is pushed as a file)."""
        if self.repo is None:
            return ""
        self.repo.propose_drug_library(library_bytes(library))
        for index in (1, 2):
            self.repo.approve(UpdateKind.DRUG_LIBRARY, self.signer(f"drug-libraries-{index}"))
        return self.repo.publish(UpdateKind.DRUG_LIBRARY).path

    def deliver(self, library: DrugLibrary) -> str:
        """Release ``library`` and bring it to the pump over the hospital's own path."""
        path = self.release(library)
        if self.repo is None:
            self.push(library_bytes(library))
        else:
            self.fetch(self.mirror(), path)
        return path

    def push(self, data: bytes) -> str:
        """Legacy: a file arrives at the pump, from anyone; the pump loads what parses."""
        try:
            load = LegacyLibraryLoader().load(data, self.ward.pump.library)
        except LibraryError as exc:
            return f"not loaded ({exc})"
        result = self.ward.install(load.library)
        if result.accepted:
            self.installed_version = load.library.version
        return result.message

    def client(self, source: MemorySource) -> UpdateClient:
        """The pump's update client, reaching the repository through ``source``."""
        return UpdateClient(
            self._state,
            SourceFetcher(source),
            clock=self.ward.clock,
            events=self.ward.events,
            device_id=self.ward.pump.serial,
        )

    def fetch(self, source: MemorySource, path: str) -> FetchOutcome:
        """Secure: the pump's update client fetches ``path`` from ``source`` and, if it is
        verified, stages it and applies it when ``can_apply`` allows (the pump is idle)."""
        installed = Installed(UpdateKind.DRUG_LIBRARY, self.library_id, self.installed_version)
        outcome = self.client(source).fetch(path, installed)
        if isinstance(outcome, VerifiedUpdate) and outcome.library is not None:
            staged = StagedUpdate(outcome, previous_version=self.installed_version)
            staged.stage()
            pump = self.ward.pump
            decision = staged.try_apply(
                pump.state, awaiting_confirmation=pump.awaiting_confirmation
            )
            if decision is ApplyDecision.APPLY and self.ward.install(outcome.library).accepted:
                self.installed_version = outcome.library.version
        return outcome

    def forge(
        self,
        source: MemorySource,
        kind: UpdateKind,
        name: str,
        version: int,
        data: bytes,
        *,
        stolen: Sequence[str],
        online: bool,
    ) -> str:
        """The attacker adds a target to ``source``, signing the role with the keys it stole
        and, if it controls the update server, the snapshot and timestamp with the online keys."""
        online_signers = [self.signer("snapshot-1"), self.signer("timestamp-1")] if online else []
        return forge_release(
            source,
            kind,
            name,
            version,
            data,
            role_signers=[self.signer(name) for name in stolen],
            online_signers=online_signers,
            now=ms_to_datetime(self.ward.clock.now_ms()),
        )


def _refusal(outcome: FetchOutcome) -> str:
    if isinstance(outcome, UpdateRefused):
        return f"refused ({outcome.code}): {outcome.error}"
    return type(outcome).__name__


def _same_content(a: DrugLibrary | None, b: DrugLibrary) -> bool:
    if a is None:
        return False
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})


def _library_outcome(
    ward: Ward, legitimate: DrugLibrary, evidence: str, *, foreign: int
) -> Outcome:
    """The library verdict: the pump enforces limits the hospital did not approve; then the
    tenfold slip at the bedside, measured."""
    ward.legitimate = legitimate
    pump_library = ward.pump.library
    succeeded = not _same_content(pump_library, legitimate)
    slip = ward.slip_at_bedside()
    harm = ward.measure(slip, with_limits=True)
    version = "none" if pump_library is None else f"v{pump_library.version}"
    slipped = "accepted and infused" if slip is not None else "refused; prescription entered"
    return Outcome(
        succeeded,
        f"{evidence}; pump runs {version}, {harm.drug} hard max {harm.enforced_hard_max} "
        f"(hospital's: {harm.legitimate_hard_max}) {harm.dose_unit}; tenfold slip {slipped}",
        harm,
        foreign_commands=foreign,
    )


def _attacker_library(ward: Ward, version: int) -> DrugLibrary:
    """The attacker's library: the hospital's, with the prescribed drug's upper limits x10."""
    return library_with_limits(
        ward.legitimate, version=version, code=ward.prescription.code, factor=_TEN
    )


class UnsignedLibraryPush(HospitalAttack):
    name = "unsigned-library-push"
    references = ("CVE-2014-5406", "CVE-2015-3956", "ICSA-15-125-01B", "ICSA-15-161-01")
    description = (
        "an attacker on the pump network pushes a drug library it wrote (the prescribed "
        "drug's limits x10); secure: it serves it to the pump with metadata nobody signed"
    )
    goal = "the pump enforces the attacker's limits"
    control = "signature-threshold"

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        current = library_with_limits(ward.legitimate, version=2)
        path.deliver(current)
        ward.attack_starts()
        evil = _attacker_library(ward, 3)
        if path.repo is None:
            said = path.push(library_bytes(evil))
            evidence = f"pushed v3 with no signature: {said}"
        else:
            mirror = path.mirror()
            forged = path.forge(
                mirror,
                UpdateKind.DRUG_LIBRARY,
                path.library_id,
                3,
                library_bytes(evil),
                stolen=(),
                online=False,
            )
            evidence = f"unsigned v3 served: {_refusal(path.fetch(mirror, forged))}"
        foreign = int(_same_content(ward.pump.library, evil))
        return _library_outcome(ward, current, evidence, foreign=foreign)


class TamperedLibrary(HospitalAttack):
    name = "tampered-library"
    references = ("CVE-2021-33885", "CVE-2023-30562", "ICSMA-21-294-01", "ICSMA-23-194-01")
    description = (
        "the pharmacy approves a routine library release; the attacker alters the data set on "
        "its way to the pump (the prescribed drug's limits x10, same id and version)"
    )
    goal = "the pump enforces the altered limits of an approved release"
    control = "target-hash"

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        path.deliver(library_with_limits(ward.legitimate, version=2))
        release = library_with_limits(ward.legitimate, version=3)
        tampered = library_bytes(_attacker_library(ward, 3))
        published = path.release(release)
        ward.attack_starts()
        if path.repo is None:
            evidence = f"v3 altered in transit: {path.push(tampered)}"
        else:
            mirror = path.mirror()
            stored = _stored_target(mirror, published)
            mirror.put(stored, tampered)
            evidence = f"v3 altered on the mirror: {_refusal(path.fetch(mirror, published))}"
        evil = LegacyLibraryLoader().load(tampered).library
        foreign = int(_same_content(ward.pump.library, evil))
        return _library_outcome(ward, release, evidence, foreign=foreign)


def _stored_target(mirror: MemorySource, path: str) -> str:
    directory, _, basename = path.rpartition("/")
    found = [p for p in mirror.paths() if p.startswith(f"targets/{directory}/")]
    return next(p for p in found if p.endswith(f".{basename}"))


class LibraryRollback(HospitalAttack):
    name = "library-rollback"
    references = ("TUF specification (rollback attack)", "NIST SP 1800-8 PR.DS-6")
    description = (
        "v1 of the library had the prescribed drug's limits x10 (a units slip), corrected in "
        "v2; the attacker brings v1 back: legacy, its file re-pushed (relabelled v3 when the "
        "pump refuses an older version); secure, the metadata it recorded while v1 was current"
    )
    goal = "the pump enforces the limits of an older, superseded library"
    control = "anti-rollback"

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        flawed = library_with_limits(
            ward.legitimate, version=1, code=ward.prescription.code, factor=_TEN
        )
        corrected = library_with_limits(ward.legitimate, version=2)
        ward.pump = ward.new_pump(None)
        old_path = path.deliver(flawed)
        recorded = path.mirror() if path.repo is not None else None
        ward.advance_min(60)
        path.deliver(corrected)
        ward.attack_starts()
        foreign = 0
        if recorded is None:
            said = path.push(library_bytes(flawed))
            evidence = f"v1 re-pushed: {said}"
            if not _same_content(ward.pump.library, flawed):
                relabelled = library_with_limits(flawed, version=3)
                evidence += f"; relabelled v3: {path.push(library_bytes(relabelled))}"
        else:
            evidence = f"recorded v1 metadata replayed: {_refusal(path.fetch(recorded, old_path))}"
        foreign = int(_same_content(ward.pump.library, flawed))
        return _library_outcome(ward, corrected, evidence, foreign=foreign)


class StolenSigningKey(HospitalAttack):
    name = "stolen-signing-key"
    references = (
        "TUF specification (key compromise; Samuel et al., CCS 2010)",
        "NIST SP 1800-8 PR.DS-6",
    )
    description = (
        "the attacker controls the update server (online snapshot and timestamp keys) and "
        "stole one pharmacist's signing key; legacy, the one pharmacy credential it stole "
        "is all a push needs; it publishes the prescribed drug's limits x10"
    )
    goal = "a library signed by one stolen key reaches the pump"
    control = "signature-threshold"

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        current = library_with_limits(ward.legitimate, version=2)
        path.deliver(current)
        ward.attack_starts()
        evil = _attacker_library(ward, 3)
        if path.repo is None:
            evidence = f"pushed v3 with the stolen credential: {path.push(library_bytes(evil))}"
        else:
            mirror = path.mirror()
            forged = path.forge(
                mirror,
                UpdateKind.DRUG_LIBRARY,
                path.library_id,
                3,
                library_bytes(evil),
                stolen=("drug-libraries-1",),
                online=True,
            )
            evidence = f"v3 signed by 1 stolen key: {_refusal(path.fetch(mirror, forged))}"
        foreign = int(_same_content(ward.pump.library, evil))
        return _library_outcome(ward, current, evidence, foreign=foreign)


class StaleMetadata(HospitalAttack):
    name = "stale-metadata"
    references = (
        "TUF specification (freeze attack; Cappos et al., CCS 2008)",
        "NIST SP 1800-8 PR.DS-6",
    )
    description = (
        "the installed v1 has the prescribed drug's limits x10 (a units slip); pharmacy "
        "publishes the correction v2 and the attacker keeps serving the pump the repository "
        "as it was (legacy: drops the push); the pump checks for updates every hour"
    )
    goal = "the pump keeps the superseded library without noticing"
    control = "metadata-expiry"
    availability = True

    _CHECKS_H = 30

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        flawed = library_with_limits(
            ward.legitimate, version=1, code=ward.prescription.code, factor=_TEN
        )
        corrected = library_with_limits(ward.legitimate, version=2)
        ward.pump = ward.new_pump(None)
        installed = path.deliver(flawed)
        frozen = path.mirror() if path.repo is not None else None
        ward.advance_min(120)
        ward.attack_starts()
        path.release(corrected)
        noticed_h: int | None = None
        refusal = ""
        for hour in range(1, self._CHECKS_H + 1):
            ward.advance_min(60)
            if frozen is not None and path.repo is not None:
                path.repo.refresh_timestamp()
                outcome = path.fetch(frozen, installed)
                if isinstance(outcome, UpdateRefused):
                    noticed_h, refusal = hour, _refusal(outcome)
                    break
        if frozen is None:
            evidence = f"v2 push dropped; {self._CHECKS_H} h later nothing noticed"
        elif noticed_h is None:
            evidence = f"frozen repository accepted for {self._CHECKS_H} h"
        else:
            evidence = (
                f"frozen repository accepted as current for {noticed_h - 1} h, then at hour "
                f"{noticed_h} {refusal}; v2 still withheld"
            )
        ward.legitimate = corrected
        succeeded = noticed_h is None and _same_content(ward.pump.library, flawed)
        measured = _library_outcome(ward, corrected, evidence, foreign=0)
        return Outcome(succeeded, measured.evidence, measured.harm)


@dataclass(frozen=True, slots=True)
class _Image:
    version: int
    data: bytes


class UnsignedFirmware(HospitalAttack):
    name = "unsigned-firmware"
    references = ("CVE-2023-30559", "CVE-2019-10959", "ICSMA-23-194-01", "ICSMA-19-164-01")
    description = (
        "the attacker uploads a firmware image of its own through the update server it "
        "controls; the image boots with a library it carries (the prescribed drug's limits "
        "x10) under the hospital's version number"
    )
    goal = "the pump boots the attacker's firmware"
    control = "signature-threshold"

    def perform(self, ward: Ward) -> Outcome:
        path = _UpdatePath(ward)
        current = library_with_limits(ward.legitimate, version=2)
        path.deliver(current)
        slots = FirmwareSlots(Slot.A, 1)
        ward.attack_starts()
        evil_library = _attacker_library(ward, 2)
        image = _Image(2, b"PGFW" + library_bytes(evil_library))
        if path.repo is None:
            slots = slots.stage(image.version).switch()
            ward.pump = ward.new_pump(evil_library)
            evidence = f"image v{image.version} written to slot {slots.active} and booted"
        else:
            mirror = path.mirror()
            forged = path.forge(
                mirror,
                UpdateKind.FIRMWARE,
                FIRMWARE_PRODUCT,
                image.version,
                image.data,
                stolen=(),
                online=True,
            )
            fetched, slots = _fetch_firmware(path, mirror, forged, slots, evil_library)
            evidence = f"unsigned image v{image.version}: {_refusal(fetched)}"
        booted = slots.active_version == image.version
        outcome = _library_outcome(ward, current, evidence, foreign=int(booted))
        return Outcome(booted, outcome.evidence, outcome.harm, outcome.foreign_commands)


def _fetch_firmware(
    path: _UpdatePath,
    source: MemorySource,
    target: str,
    slots: FirmwareSlots,
    carried: DrugLibrary,
) -> tuple[FetchOutcome, FirmwareSlots]:
    """The pump's client fetches a firmware target; a verified image is staged into the spare
    slot, booted on the idle pump and committed (it boots with the library it carries)."""
    installed = Installed(UpdateKind.FIRMWARE, FIRMWARE_PRODUCT, slots.active_version)
    outcome = path.client(source).fetch(target, installed)
    if not isinstance(outcome, VerifiedUpdate):
        return outcome, slots
    staged = StagedUpdate(outcome, slots=slots)
    staged.stage()
    if staged.try_apply(path.ward.pump.state) is ApplyDecision.APPLY:
        staged.self_test(True)
        path.ward.pump = path.ward.new_pump(carried)
    return outcome, staged.slots or slots
