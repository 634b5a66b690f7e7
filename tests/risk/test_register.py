"""Risk register: answers move likelihood the documented way; controls credit honestly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pumpguard.risk import (
    AnswersError,
    AnswerSet,
    ControlCatalogue,
    KnowledgeBase,
    ModelCatalogue,
    RiskRegister,
    Threat,
    build_register,
    load_answers,
    match_inventory,
    parse_answers,
    parse_inventory_csv,
)
from pumpguard.risk.questionnaire import Questionnaires
from pumpguard.risk.register import rating_for

ROOT = Path(__file__).resolve().parents[2]
HEADER = "manufacturer,model,software_version,count,zone\n"
ROWS = (
    "BD,Alaris PC Unit 8015,9.19,40,ICU\n"
    "Smiths Medical,Medfusion 4000,1.6,4,NICU\n"
    "Hospira,LifeCare PCA5,5.0,6,PACU\n"
    "Baxter,Sigma Spectrum,8.00.01,8,Onc\n"
    "Medtronic,MiniMed Paradigm 722,,1,Clinic\n"
)


def _register(
    kb: KnowledgeBase,
    catalogue: ModelCatalogue,
    questionnaires: Questionnaires,
    controls: ControlCatalogue,
    answers: dict[str, object] | None = None,
) -> RiskRegister:
    report = match_inventory(parse_inventory_csv(HEADER + ROWS, "t.csv"), kb, catalogue)
    keys = [m.key for m in catalogue.models]
    parsed = parse_answers(answers or {}, questionnaires, keys)
    return build_register(report, kb, catalogue, questionnaires, controls, parsed)


def _risk(register: RiskRegister, cve: str, threat: Threat, model: str | None = None):  # type: ignore[no-untyped-def]
    return next(
        r
        for r in register.risks
        if r.vulnerability.cve == cve
        and r.threat is threat
        and (model is None or r.asset.model_key == model)
    )


@pytest.fixture
def parts(kb, catalogue, questionnaires, controls):  # type: ignore[no-untyped-def]
    return kb, catalogue, questionnaires, controls


def test_one_risk_per_asset_group_threat_and_vulnerability(parts) -> None:  # type: ignore[no-untyped-def]
    register = _register(*parts)
    keys = [
        (r.asset.model_key, r.asset.version, r.asset.zone, r.vulnerability.cve, r.threat)
        for r in register.risks
    ]
    assert len(keys) == len(set(keys))
    # CVE-2020-25165 (C:N/I:L/A:L) realises dose change and disruption, not PHI disclosure.
    threats = {r.threat for r in register.risks if r.vulnerability.cve == "CVE-2020-25165"}
    assert threats == {Threat.DOSE_CHANGE, Threat.THERAPY_DISRUPTION}


def test_segmentation_lowers_likelihood_of_network_attacks(parts) -> None:  # type: ignore[no-untyped-def]
    before = _register(*parts)
    after = _register(*parts, answers={"hospital": {"env.segmentation": "yes"}})
    # CVE-2017-12725 is AV:N: segmentation makes it adjacent (MAV:A) and lowers likelihood.
    old = _risk(before, "CVE-2017-12725", Threat.DOSE_CHANGE)
    new = _risk(after, "CVE-2017-12725", Threat.DOSE_CHANGE)
    assert new.current.likelihood < old.current.likelihood
    assert "MAV:A" in new.environmental_vector
    assert new.inherent == old.inherent
    # An adjacent RF attack (CVE-2019-10964, AV:A) is not helped by network segmentation.
    rf_old = _risk(before, "CVE-2019-10964", Threat.DOSE_CHANGE)
    rf_new = _risk(after, "CVE-2019-10964", Threat.DOSE_CHANGE)
    assert rf_new.current.likelihood == rf_old.current.likelihood


def test_segmentation_no_is_the_same_as_unanswered(parts) -> None:  # type: ignore[no-untyped-def]
    unanswered = _register(*parts)
    answered_no = _register(*parts, answers={"hospital": {"env.segmentation": "no"}})
    assert [r.current for r in unanswered.risks] == [r.current for r in answered_no.risks]
    assert any(u.question.id == "env.segmentation" for u in unanswered.unanswered)
    assert not any(u.question.id == "env.segmentation" for u in answered_no.unanswered)


def test_closed_services_lower_hardcoded_credential_risks_only(parts) -> None:  # type: ignore[no-untyped-def]
    before = _register(*parts)
    after = _register(*parts, answers={"hospital": {"env.service_ports_blocked": "yes"}})
    hardcoded = "CVE-2015-1011"  # LifeCare PCA hard-coded credentials
    assert (
        _risk(after, hardcoded, Threat.DOSE_CHANGE).current.likelihood
        < _risk(before, hardcoded, Threat.DOSE_CHANGE).current.likelihood
    )
    overflow = "CVE-2017-12718"
    assert (
        _risk(after, overflow, Threat.DOSE_CHANGE).current
        == _risk(before, overflow, Threat.DOSE_CHANGE).current
    )


def test_precondition_answered_no_makes_it_not_exploitable(parts) -> None:  # type: ignore[no-untyped-def]
    answers = {"devices": {"smiths-medfusion-4000": {"dev.ftp_enabled": "no"}}}
    register = _register(*parts, answers=answers)
    ftp = _risk(register, "CVE-2017-12720", Threat.DOSE_CHANGE)
    assert ftp.current.likelihood == 0
    assert not ftp.precondition_met
    assert ftp.inherent.likelihood > 0
    wifi = _risk(register, "CVE-2017-12725", Threat.DOSE_CHANGE)
    assert wifi.current.likelihood > 0


def test_device_answers_change_impact(parts) -> None:  # type: ignore[no-untyped-def]
    before = _register(*parts)
    answers = {
        "devices": {"bd-alaris-pcu-8015": {"dev.stores_phi": "no", "dev.life_sustaining": "no"}}
    }
    after = _register(*parts, answers=answers)
    for cve, threat in (
        ("CVE-2023-30560", Threat.PHI_DISCLOSURE),
        ("CVE-2020-25165", Threat.THERAPY_DISRUPTION),
    ):
        assert _risk(after, cve, threat).current.impact < _risk(before, cve, threat).current.impact
    assert "CR:L" in _risk(after, "CVE-2023-30560", Threat.PHI_DISCLOSURE).environmental_vector


def test_wireless_off_nearly_removes_network_likelihood(parts) -> None:  # type: ignore[no-untyped-def]
    answers = {"devices": {"baxter-spectrum": {"dev.wireless_enabled": "no"}}}
    before, after = _register(*parts), _register(*parts, answers=answers)
    network = _risk(after, "CVE-2020-12040", Threat.DOSE_CHANGE)
    assert (
        network.current.likelihood
        < 0.1 * _risk(before, "CVE-2020-12040", Threat.DOSE_CHANGE).current.likelihood
    )
    keypad = "CVE-2020-12039"  # AV:P: a keypad password is not a network attack
    assert (
        _risk(after, keypad, Threat.DOSE_CHANGE).current
        == _risk(before, keypad, Threat.DOSE_CHANGE).current
    )


def test_residual_never_exceeds_current_and_planned_controls_earn_nothing(parts) -> None:  # type: ignore[no-untyped-def]
    register = _register(*parts)
    for risk in register.risks:
        assert risk.residual.score <= risk.current.score
        assert all(c.implemented for c in risk.credited)
        assert all(not c.implemented for c in risk.recommended)
        if not risk.credited:
            assert risk.residual == risk.current


def test_hard_limits_credit_dose_change_only(parts) -> None:  # type: ignore[no-untyped-def]
    register = _register(*parts)
    dose = _risk(register, "CVE-2017-12725", Threat.DOSE_CHANGE)
    assert "PG-HARD-LIMITS" in {c.id for c in dose.credited}
    phi = _risk(register, "CVE-2017-12725", Threat.PHI_DISCLOSURE)
    assert "PG-HARD-LIMITS" not in {c.id for c in phi.credited}
    # The insulin pump's RF weakness: the secure link prevents, monitoring helps a little;
    # mutual TLS is for networked pumps and earns nothing on a radio link.
    rf = _risk(register, "CVE-2019-10964", Threat.PHI_DISCLOSURE)
    assert {c.id for c in rf.credited} == {"PG-SECURE-RF-LINK", "PG-MONITORING"}
    expected = rf.current.likelihood * (1 - 0.8) * (1 - 0.2)
    assert rf.residual.likelihood == pytest.approx(expected, abs=1e-4)


def test_scores_and_ratings(parts) -> None:  # type: ignore[no-untyped-def]
    register = _register(*parts)
    for risk in register.risks:
        for score in (risk.inherent, risk.current, risk.residual):
            assert 0 <= score.likelihood <= 1 and 0 <= score.impact <= 1
            assert score.score == round(10 * score.likelihood * score.impact, 2)
    assert [rating_for(x).value for x in (0, 1.49, 1.5, 3.5, 5.99, 6, 10)] == [
        "low",
        "low",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]
    cells = register.heat_map()
    assert sum(map(sum, cells)) == sum(1 for r in register.risks if r.current.score > 0)


def test_answers_file_errors_name_the_problem(tmp_path: Path, parts) -> None:  # type: ignore[no-untyped-def]
    _kb, catalogue, questionnaires, _controls = parts
    keys = [m.key for m in catalogue.models]
    path = tmp_path / "answers.yaml"
    path.write_text(
        "hospital:\n  env.segmentation: maybe\n  env.bogus: yes\n"
        "devices:\n  acme-pump: {dev.stores_phi: no}\n  bd-alaris-pcu-8015: {dev.nope: yes}\n",
        "utf-8",
    )
    with pytest.raises(AnswersError) as caught:
        load_answers(path, questionnaires, keys)
    text = str(caught.value)
    for words in (
        "env.segmentation: answer must be yes or no",
        "env.bogus: unknown question",
        "acme-pump: unknown model key",
        "dev.nope: unknown question",
    ):
        assert words in text
    path.write_text("hospital: [oops\n", "utf-8")
    with pytest.raises(AnswersError, match="not valid YAML"):
        load_answers(path, questionnaires, keys)
    with pytest.raises(AnswersError, match="cannot read"):
        load_answers(tmp_path / "missing.yaml", questionnaires, keys)
    assert AnswerSet.empty().hospital == {}


def _collected_test_ids() -> set[str]:
    """Node ids of every test function in tests/ (module level and in classes), by parsing."""
    ids: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        rel = path.relative_to(ROOT).as_posix()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                ids.add(f"{rel}::{node.name}")
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                        ids.add(f"{rel}::{node.name}::{item.name}")
    return ids


def test_every_mapped_test_exists(controls: ControlCatalogue) -> None:
    existing = _collected_test_ids()
    missing = [t for t in controls.test_ids() if t not in existing]
    assert not missing, f"controls map to tests that do not exist: {missing}"


def test_implemented_controls_have_tests_and_planned_have_none(controls: ControlCatalogue) -> None:
    implemented = [c for c in controls if c.implemented]
    planned = [c for c in controls if not c.implemented]
    assert implemented and planned
    assert all(c.tests for c in implemented)
    assert all(not c.tests for c in planned)
    for c in controls:
        assert c.csf and c.sp800_53
    for built in ("PG-SECURE-RF-LINK", "PG-PKI-MUTUAL-TLS", "PG-SIGNED-UPDATES", "PG-MONITORING"):
        assert next(c for c in controls if c.id == built).implemented
