"""Model-name normalisation: the spellings real inventories use."""

from __future__ import annotations

import pytest

from pumpguard.risk import ModelCatalogue, normalise_text
from pumpguard.risk.models import split_model_version


@pytest.mark.parametrize(
    ("manufacturer", "model", "key"),
    [
        ("BD", "Alaris PC Unit 8015", "bd-alaris-pcu-8015"),
        ("", "Alaris PC Unit 8015", "bd-alaris-pcu-8015"),
        ("BD", "BD Alaris 8015", "bd-alaris-pcu-8015"),
        ("Becton Dickinson", "Alaris™ Point-of-Care Unit", "bd-alaris-pcu-8015"),
        ("CareFusion", "Alaris", "bd-alaris-pcu-8015"),
        ("Cardinal Health", "Alaris System", "bd-alaris-pcu-8015"),
        ("BD", "Alaris 8100 LVP module", "bd-alaris-pump-module"),
        ("BD", "Alaris Gateway Workstation", "bd-alaris-gateway-workstation"),
        ("BD", "Alaris GH", "bd-alaris-gh"),
        ("BD", "Alaris Systems Manager", "bd-alaris-systems-manager"),
        ("Hospira", "Plum A+", "icu-plum-a-plus"),
        ("ICU Medical", "Plum A+", "icu-plum-a-plus"),
        ("Pfizer", "Plum A Plus", "icu-plum-a-plus"),
        ("Hospira", "Plum A+ 3", "icu-plum-a-plus-3"),
        ("ICU Medical", "Plum A+3", "icu-plum-a-plus-3"),
        ("ICU Medical", "Plum 360", "icu-plum-360"),
        ("Hospira", "Symbiq", "icu-symbiq"),
        ("Hospira", "LifeCare PCA3", "icu-lifecare-pca"),
        ("Hospira", "PCA 5", "icu-lifecare-pca"),
        ("Baxter", "Sigma Spectrum", "baxter-spectrum"),
        ("Sigma", "Spectrum", "baxter-spectrum"),
        ("Baxter", "Spectrum IQ", "baxter-spectrum"),
        ("Baxter", "35700BAX2", "baxter-spectrum"),
        ("B.Braun", "Space Infusomat", "bbraun-infusomat-space"),
        ("B. Braun Melsungen", "Infusomat Space P", "bbraun-infusomat-space"),
        ("BBraun", "Perfusor Space", "bbraun-perfusor-space"),
        ("B. Braun", "SpaceStation", "bbraun-spacestation-spacecom2"),
        ("B. Braun", "SpaceCom 2", "bbraun-spacestation-spacecom2"),
        ("Smiths Medical", "Medfusion 4000", "smiths-medfusion-4000"),
        ("ICU Medical", "Medfusion 4000 Wireless Syringe Infusion Pump", "smiths-medfusion-4000"),
        ("Medtronic", "MiniMed 508", "medtronic-minimed-508"),
        ("Medtronic", "MMT-508", "medtronic-minimed-508"),
        ("Medtronic", "Paradigm 722", "medtronic-paradigm-522-722"),
        ("Medtronic", "MiniMed Paradigm REAL-Time 722", "medtronic-paradigm-522-722"),
        ("Medtronic", "Paradigm 722K", "medtronic-paradigm-522k-722k"),
        ("Medtronic", "MMT-723", "medtronic-paradigm-523-723"),
        ("Medtronic", "Paradigm Revel 523", "medtronic-paradigm-523-723"),
        ("Medtronic", "MiniMed Paradigm 712E", "medtronic-paradigm-712e"),
        ("Medtronic", "Paradigm 712", "medtronic-paradigm-512-712"),
        ("Medtronic", "Paradigm Veo 754", "medtronic-paradigm-veo-554-754"),
        ("Medtronic", "MiniMed Veo 754CM", "medtronic-paradigm-veo-554cm-754cm"),
        ("Medtronic", "MiniMed 670G", "medtronic-minimed-670g"),
        ("Medtronic", "MMT-503 remote", "medtronic-remote-mmt-503"),
        ("Animas", "OneTouch Ping", "animas-onetouch-ping"),
        ("Insulet", "OmniPod", "insulet-omnipod-eros"),
        ("Insulet", "Omnipod Eros", "insulet-omnipod-eros"),
        ("Insulet", "Omnipod DASH", "insulet-omnipod-dash"),
    ],
)
def test_real_spellings_are_identified(
    catalogue: ModelCatalogue, manufacturer: str, model: str, key: str
) -> None:
    found = catalogue.identify(manufacturer, model)
    assert found is not None, f"{manufacturer} {model} not identified"
    assert found.model.key == key


@pytest.mark.parametrize(
    ("manufacturer", "model"),
    [
        ("Fresenius Kabi", "Agilia VP"),
        ("Moog", "CURLIN 6000"),
        ("Medtronic", "Paradigm"),
        ("Baxter", "Colleague"),
        ("", "Infusion pump"),
        ("Smiths Medical", "CADD-Solis"),
        ("Hospira", "LifeCare 5000"),
        ("ICU Medical", "Plum XL"),
        ("BD", "Alaris GP"),
    ],
)
def test_unknown_or_ambiguous_models_are_not_guessed(
    catalogue: ModelCatalogue, manufacturer: str, model: str
) -> None:
    assert catalogue.identify(manufacturer, model) is None


def test_a_bare_number_needs_the_right_vendor(catalogue: ModelCatalogue) -> None:
    found = catalogue.identify("Medtronic", "722")
    assert found is not None and found.inferred
    assert catalogue.identify("Acme", "722") is None


def test_another_vendor_never_matches(catalogue: ModelCatalogue) -> None:
    assert catalogue.identify("Baxter", "Alaris 8015") is None


def test_inferred_family_is_flagged(catalogue: ModelCatalogue) -> None:
    found = catalogue.identify("Carefusion", "Alaris")
    assert found is not None and found.inferred
    exact = catalogue.identify("BD", "Alaris PC Unit 8015")
    assert exact is not None and not exact.inferred


def test_normalise_text() -> None:
    assert normalise_text("BD Alaris™ PC-Unit 8015") == "bd alaris pc unit 8015"
    assert normalise_text("Plum A+3") == "plum a plus 3"
    assert normalise_text("B.Braun  Space®") == "b braun space"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Sigma Spectrum 8.00.01", ("Sigma Spectrum", "8.00.01")),
        ("Medfusion 4000 v1.6", ("Medfusion 4000", "1.6")),
        ("Alaris PC Unit 8015", ("Alaris PC Unit 8015", None)),
        ("Plum A+ 3", ("Plum A+ 3", None)),
    ],
)
def test_version_embedded_in_the_model(model: str, expected: tuple[str, str | None]) -> None:
    assert split_model_version(model) == expected
