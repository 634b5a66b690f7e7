"""The threat model is complete, its references resolve, and its document is current."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.risk.test_register import _collected_test_ids

from pumpguard.lab.attacks import CATALOGUE
from pumpguard.risk import (
    ElementKind,
    Stride,
    ThreatModel,
    load_controls,
    load_threat_model,
    render_threat_model,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security" / "threat-model.md"


@pytest.fixture(scope="module")
def model() -> ThreatModel:
    return load_threat_model()


def test_every_applicable_stride_letter_of_every_element_is_covered(model: ThreatModel) -> None:
    assert model.uncovered() == []


def test_references_resolve_to_controls_tests_and_attacks(model: ThreatModel) -> None:
    assert model.unknown_controls(load_controls()) == []
    existing = _collected_test_ids()
    assert [t for th in model.threats for t in th.tests if t not in existing] == []
    names = {attack.name for attack in CATALOGUE}
    assert [a for th in model.threats for a in th.attacks if a not in names] == []


def test_every_attack_of_the_catalogue_is_traced_to_a_threat(model: ThreatModel) -> None:
    traced = {a for th in model.threats for a in th.attacks}
    assert sorted(attack.name for attack in CATALOGUE if attack.name not in traced) == []


def test_the_document_is_the_rendering_of_the_model(model: ThreatModel) -> None:
    assert DOC.read_text(encoding="utf-8") == render_threat_model(model, load_controls()), (
        "run: pumpguard risk threat-model --out docs/security/threat-model.md"
    )


def test_a_gap_is_found(model: ThreatModel) -> None:
    without = model.model_copy(
        update={"threats": tuple(t for t in model.threats if t.id != "T-RADIO-EAVESDROP")}
    )
    assert ("pairing", Stride.INFORMATION_DISCLOSURE) in without.uncovered()


@pytest.mark.parametrize(
    ("kind", "letters"),
    [
        (ElementKind.EXTERNAL_ENTITY, "SR"),
        (ElementKind.PROCESS, "STRIDE"),
        (ElementKind.DATA_STORE, "TID"),
        (ElementKind.DATA_FLOW, "TID"),
    ],
)
def test_stride_per_element_follows_the_sdl(
    model: ThreatModel, kind: ElementKind, letters: str
) -> None:
    element = next(e for e in model.elements if e.kind is kind and not e.log)
    assert element.applicable == {Stride(letter) for letter in letters}


def test_bad_models_are_refused_with_the_place(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(
        "boundaries: [{id: B-X, name: x}]\n"
        "elements: [{id: a, kind: process, name: A}, "
        "{id: f, kind: data_flow, name: F, from: a, to: nowhere}]\n"
        "threats: [{id: T-X, elements: [a], stride: [S], title: t, accepted: why}]\n"
    )
    with pytest.raises(ValueError, match="unknown flow end 'nowhere'"):
        load_threat_model(path)
    path.write_text(
        path.read_text().replace("to: nowhere", "to: a").replace("accepted: why", "x: 1")
    )
    with pytest.raises(ValueError, match="threats"):
        load_threat_model(path)


def test_the_cli_writes_and_checks_the_document(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pumpguard.cli import app

    runner = CliRunner()
    target = tmp_path / "threat-model.md"
    stale = runner.invoke(app, ["risk", "threat-model", "--out", str(target), "--check"])
    assert stale.exit_code == 1
    assert "out of date" in stale.output
    written = runner.invoke(app, ["risk", "threat-model", "--out", str(target)])
    assert written.exit_code == 0
    assert target.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    assert (
        runner.invoke(app, ["risk", "threat-model", "--out", str(target), "--check"]).exit_code == 0
    )
