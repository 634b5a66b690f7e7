"""The hospital attack matrix: legacy suffers each attack with a measured overdose, secure
blocks it with the control the entry names and logs a specific security event."""

from __future__ import annotations

import pytest

from pumpguard.interop import InteropEvent
from pumpguard.lab.attacks import (
    HARM_KEYS,
    HOSPITAL_CATALOGUE,
    AttackResult,
    HospitalAttack,
    InfusionHarm,
    System,
    get_attack,
    run_trial,
)
from pumpguard.lab.attacks.hospital_ward import SLIP_FACTOR
from pumpguard.link import LinkProfile
from pumpguard.pki import PkiEvent
from pumpguard.updates import UpdateEvent

Matrix = dict[tuple[str, LinkProfile], AttackResult]

ATTACKS = [pytest.param(a, id=a.name) for a in HOSPITAL_CATALOGUE]

LEGACY_NOT_REPRODUCED = {"order-beyond-hard-limit"}
"""The pump's own dose error reduction refuses a dose above its hard limit in both profiles:
the legacy gateway forwards the order, silently, and the pump refuses to pre-fill it."""

EXPECTED_EVENT: dict[str, str] = {
    "unsigned-library-push": UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET,
    "tampered-library": UpdateEvent.TARGET_HASH_MISMATCH,
    "library-rollback": UpdateEvent.ROLLBACK,
    "unsigned-firmware": UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET,
    "stolen-signing-key": UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET,
    "stale-metadata": UpdateEvent.FREEZE,
    "order-unauthenticated-host": PkiEvent.TLS_NO_CLIENT_CERT,
    "order-replay": InteropEvent.REPLAYED,
    "order-tampered-in-transit": PkiEvent.TLS_UNKNOWN_CA,
    "order-beyond-hard-limit": InteropEvent.HARD_LIMIT,
    "order-wrong-patient": InteropEvent.PATIENT_MISMATCH,
}
LIBRARY_ATTACKS = {
    "unsigned-library-push",
    "tampered-library",
    "library-rollback",
    "unsigned-firmware",
    "stolen-signing-key",
    "stale-metadata",
}


def run_hospital_matrix(seed: int) -> Matrix:
    return {
        (a.name, profile): get_attack(a.name).run(profile, seed=seed)
        for a in HOSPITAL_CATALOGUE
        for profile in LinkProfile
    }


@pytest.fixture(scope="module")
def hospital() -> Matrix:
    return run_hospital_matrix(1)


def _harm(result: AttackResult) -> InfusionHarm:
    assert isinstance(result.harm, InfusionHarm), result.harm
    return result.harm


def check_legacy(attack: type[HospitalAttack], result: AttackResult) -> None:
    harm = _harm(result)
    assert result.system == "hospital" and result.profile == "legacy"
    assert not result.logged, result.events
    if attack.name in LEGACY_NOT_REPRODUCED:
        assert not result.succeeded and result.blocked_by == "pump-ders", result.evidence
        assert harm.programmed_dose is None and harm.delivered_ml == harm.prescribed_ml
        return
    assert result.succeeded, result.evidence
    assert result.blocked_by is None
    factor = harm.overdose_factor
    assert factor is not None and factor > 1.5, result
    assert harm.programmed_dose is not None and harm.programmed_dose > harm.prescribed_dose
    if attack.name in LIBRARY_ATTACKS:
        assert harm.legitimate_hard_max is not None
        assert harm.enforced_hard_max == harm.legitimate_hard_max * SLIP_FACTOR
        assert harm.programmed_dose == harm.prescribed_dose * SLIP_FACTOR


def check_secure(attack: type[HospitalAttack], result: AttackResult) -> None:
    harm = _harm(result)
    assert result.profile == "secure"
    assert not result.succeeded, result.evidence
    assert result.blocked_by == attack.control, result
    assert result.logged and EXPECTED_EVENT[attack.name] in result.events, result.events
    assert result.foreign_commands == 0
    if attack.availability:
        return
    assert harm.programmed_dose is None
    assert harm.delivered_ml == harm.prescribed_ml, result
    if attack.name in LIBRARY_ATTACKS:
        assert harm.enforced_hard_max == harm.legitimate_hard_max


@pytest.mark.parametrize("attack", ATTACKS)
def test_legacy_suffers_the_attack(attack: type[HospitalAttack], hospital: Matrix) -> None:
    check_legacy(attack, hospital[(attack.name, LinkProfile.LEGACY)])


@pytest.mark.parametrize("attack", ATTACKS)
def test_secure_blocks_and_logs_the_attack(attack: type[HospitalAttack], hospital: Matrix) -> None:
    check_secure(attack, hospital[(attack.name, LinkProfile.SECURE)])


def test_the_tenfold_slip_is_delivered_only_with_the_attackers_library(hospital: Matrix) -> None:
    legacy = _harm(hospital[("tampered-library", LinkProfile.LEGACY)])
    secure = _harm(hospital[("tampered-library", LinkProfile.SECURE)])
    assert legacy.drug == "Heparin" and legacy.dose_unit == "units/kg/h"
    assert legacy.delivered_ml == secure.prescribed_ml * SLIP_FACTOR
    assert legacy.overdose_factor == pytest.approx(10.0)
    assert secure.delivered_ml == secure.prescribed_ml


def test_a_frozen_repository_is_noticed_but_the_correction_stays_withheld(
    hospital: Matrix,
) -> None:
    """TUF turns a freeze into a detection within the timestamp's expiry (one day); it cannot
    deliver the withheld correction: the pump keeps the flawed library meanwhile."""
    secure = hospital[("stale-metadata", LinkProfile.SECURE)]
    legacy = hospital[("stale-metadata", LinkProfile.LEGACY)]
    assert secure.availability and secure.blocked_by == "metadata-expiry"
    assert "v2 still withheld" in secure.evidence
    assert _harm(secure).enforced_hard_max == _harm(legacy).enforced_hard_max
    assert legacy.succeeded and not legacy.logged


def test_the_unauthenticated_host_is_refused_with_and_without_a_certificate(
    hospital: Matrix,
) -> None:
    secure = hospital[("order-unauthenticated-host", LinkProfile.SECURE)]
    assert set(secure.events) == {PkiEvent.TLS_NO_CLIENT_CERT, PkiEvent.TLS_UNKNOWN_CA}


def test_the_replayed_order_doubles_the_current_rate_in_legacy(hospital: Matrix) -> None:
    harm = _harm(hospital[("order-replay", LinkProfile.LEGACY)])
    assert harm.programmed_dose == harm.prescribed_dose * 2
    assert harm.overdose_factor == pytest.approx(2.0)


def test_the_attacker_in_the_path_reads_nothing_over_tls(hospital: Matrix) -> None:
    legacy = hospital[("order-tampered-in-transit", LinkProfile.LEGACY)]
    assert "attacker read 1 order(s)" in legacy.evidence
    secure = hospital[("order-tampered-in-transit", LinkProfile.SECURE)]
    assert "attacker read 0 order(s)" in secure.evidence
    assert "CERTIFICATE_VERIFY_FAILED" in secure.evidence


def test_results_carry_the_issue_keys_and_one_harm_shape(hospital: Matrix) -> None:
    for result in hospital.values():
        row = result.to_json()
        assert {
            "name",
            "system",
            "reference",
            "profile",
            "succeeded",
            "blocked_by",
            "logged",
            "harm",
        } <= set(row)
        harm = row["harm"]
        assert isinstance(harm, dict)
        assert tuple(harm) == HARM_KEYS
        assert harm["extra_insulin_u"] is None and harm["minutes_below_54"] is None
        assert isinstance(harm["delivered_ml"], float) and harm["window_min"] == 60


def test_a_trial_returns_the_result_and_its_events() -> None:
    trial = run_trial("order-wrong-patient", LinkProfile.SECURE, seed=2)
    assert trial.result.system == System.HOSPITAL
    assert trial.caused and all(e in trial.events for e in trial.caused)
    assert tuple(dict.fromkeys(e.code for e in trial.caused)) == trial.result.events
    assert all(e.device_id == "PUMP-0001" for e in trial.caused)


@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("name", ["unsigned-library-push", "order-tampered-in-transit"])
def test_other_drugs(name: str, seed: int) -> None:
    attack = type(get_attack(name))
    assert issubclass(attack, HospitalAttack)
    check_legacy(attack, get_attack(name).run(LinkProfile.LEGACY, seed=seed))
    check_secure(attack, get_attack(name).run(LinkProfile.SECURE, seed=seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6, 7])
def test_full_hospital_matrix_on_every_drug(seed: int) -> None:
    found = run_hospital_matrix(seed)
    for attack in HOSPITAL_CATALOGUE:
        check_legacy(attack, found[(attack.name, LinkProfile.LEGACY)])
        check_secure(attack, found[(attack.name, LinkProfile.SECURE)])
    drugs = {_harm(r).drug for r in found.values()}
    assert len(drugs) == 1
