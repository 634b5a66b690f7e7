"""Matching inventory rows to advisories by model and version, checked by hand."""

from __future__ import annotations

import pytest

from pumpguard.risk import (
    KnowledgeBase,
    MatchReport,
    MatchStatus,
    ModelCatalogue,
    match_inventory,
    parse_inventory_csv,
)

HEADER = "manufacturer,model,software_version,count,zone\n"


def _match(kb: KnowledgeBase, catalogue: ModelCatalogue, rows: str) -> MatchReport:
    return match_inventory(parse_inventory_csv(HEADER + rows, "test.csv"), kb, catalogue)


def _ids(report: MatchReport, line: int = 2) -> dict[str, MatchStatus]:
    return {m.advisory.id: m.status for m in report.matches if m.row.line == line}


def test_hand_checked_alaris_8015_matches(kb: KnowledgeBase, catalogue: ModelCatalogue) -> None:
    # ICSMA-20-317-01: "BD Alaris PC Unit, Model 8015, versions 9.33.1 and earlier".
    # ICSMA-23-194-01: "BD Alaris Point-of-Care Unit (PCU) Model 8015 v12.1.3 and prior".
    report = _match(
        kb,
        catalogue,
        "BD,Alaris PC Unit 8015,9.19,40,ICU\n"
        "BD,BD Alaris 8015,9.33.1,5,ED\n"
        "BD,BD Alaris 8015,12.1.1,5,ED\n"
        "BD,BD Alaris 8015,12.1.3,5,ED\n"
        "BD,BD Alaris 8015,12.3,5,ED\n",
    )
    assert set(_ids(report, 2)) == {"ICSMA-20-317-01", "ICSMA-23-194-01"}
    assert set(_ids(report, 3)) == {"ICSMA-20-317-01", "ICSMA-23-194-01"}  # last affected
    assert set(_ids(report, 4)) == {"ICSMA-23-194-01"}  # first fixed for CVE-2020-25165
    assert set(_ids(report, 5)) == {"ICSMA-23-194-01"}  # last affected by Guardrails MX
    assert _ids(report, 6) == {}  # 12.3: after both
    first = next(m for m in report.matches if m.row.line == 2 and m.advisory.id.endswith("317-01"))
    assert first.cves == ["CVE-2020-25165"]
    mx = next(m for m in report.matches if m.row.line == 2 and m.advisory.id.endswith("194-01"))
    assert mx.cves == ["CVE-2023-30559", "CVE-2023-30560", "CVE-2023-30561"]


def test_hand_checked_medtronic_723_version_limit(
    kb: KnowledgeBase, catalogue: ModelCatalogue
) -> None:
    # ICSMA-19-178-01: "MiniMed Paradigm 523/723 pumps - Software versions 2.4A or lower".
    report = _match(
        kb,
        catalogue,
        "Medtronic,MiniMed Paradigm 723,2.4A,1,Clinic\n"
        "Medtronic,MiniMed Paradigm 723,2.3A,1,Clinic\n"
        "Medtronic,MiniMed Paradigm 723,2.5A,1,Clinic\n"
        "Medtronic,MiniMed Paradigm 722,,1,Clinic\n"
        "Medtronic,MiniMed 508,,1,Clinic\n",
    )
    assert "ICSMA-19-178-01" in _ids(report, 2)
    assert "ICSMA-19-178-01" in _ids(report, 3)
    assert "ICSMA-19-178-01" not in _ids(report, 4)
    # 522/722 and 508: all versions, so no version is needed to be affected.
    assert _ids(report, 5)["ICSMA-19-178-01"] is MatchStatus.AFFECTED
    assert _ids(report, 6)["ICSMA-19-178-01"] is MatchStatus.AFFECTED
    # The remote-controller advisory applies to these pumps with a condition.
    remote = next(
        m for m in report.matches if m.row.line == 5 and m.advisory.id == "ICSMA-18-219-02"
    )
    assert "remote controller" in remote.reason
    assert remote.cves == ["CVE-2018-10634", "CVE-2018-14781"]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("Smiths Medical,Medfusion 4000,1.6,1,NICU", {"ICSMA-17-250-02A"}),
        ("Smiths Medical,Medfusion 4000,1.5,1,NICU", {"ICSMA-17-250-02A"}),
        ("Smiths Medical,Medfusion 4000,1.6.0,1,NICU", {"ICSMA-17-250-02A"}),
        ("Smiths Medical,Medfusion 4000,1.6.1,1,NICU", set()),
        ("Smiths Medical,Medfusion 4000,1.4,1,NICU", set()),
        ("Hospira,LifeCare PCA3,5.0,1,PACU", {"ICSA-15-125-01B"}),
        ("Hospira,LifeCare PCA5,3.0,1,PACU", {"ICSA-15-125-01B"}),
        ("ICU Medical,LifeCare PCA,7.0,1,PACU", set()),
        ("Hospira,Plum A+,13.4,1,Ward", {"ICSA-15-161-01"}),
        ("Hospira,Plum A+,13.41,1,Ward", set()),
        ("ICU Medical,Plum A+ 3,13.6,1,Ward", {"ICSA-15-161-01"}),
        ("ICU Medical,Plum A+ 3,13.7,1,Ward", set()),
        ("ICU Medical,Plum 360,15.1,1,Ward", set()),
        ("Hospira,Symbiq,3.13,1,Ward", {"ICSA-15-161-01", "ICSA-15-174-01"}),
        ("Hospira,Symbiq,4.0,1,Ward", set()),
        ("Baxter,Sigma Spectrum 8.00.01,,1,Onc", {"ICSMA-20-170-04", "ICSMA-22-251-01"}),
        ("Baxter,Sigma Spectrum,6.02.11,1,Onc", {"ICSMA-20-170-04", "ICSMA-22-251-01"}),
        ("Baxter,Spectrum,7.00,1,Onc", set()),
        ("B.Braun,Space Infusomat,L81,1,OR", {"ICSMA-21-294-01"}),
        ("B.Braun,Space Infusomat,L82,1,OR", set()),
        ("B. Braun,Perfusor Space,028U000061,1,OR", {"ICSMA-21-294-01"}),
        ("B. Braun,Perfusor Space,028U000093,1,OR", set()),
        ("B. Braun,SpaceStation,012U000061,1,OR", {"ICSMA-21-294-01"}),
        ("B. Braun,SpaceStation,012U000062,1,OR", set()),
        ("BD,Alaris Gateway Workstation,1.3.1 Build 13,1,ICU", {"ICSMA-19-164-01"}),
        ("BD,Alaris Gateway Workstation,1.3.2,1,ICU", set()),
        ("BD,Alaris GH,2.3.6,1,ICU", {"ICSMA-19-164-01"}),
        ("BD,Alaris Systems Manager,4.33,1,DC", {"ICSMA-20-317-01", "ICSMA-23-194-01"}),
        ("Insulet,Omnipod,,1,Clinic", {"ICSMA-20-079-01"}),
        ("Insulet,Omnipod DASH,,1,Clinic", set()),
        ("Animas,OneTouch Ping,,1,Clinic", {"ICSMA-16-279-01"}),
        ("Medtronic,MiniMed 640G,,1,Clinic", {"ICSMA-22-263-01"}),
        ("Medtronic,Paradigm Veo 754,2.7A,1,Clinic", {"ICSMA-18-219-02"}),
        ("Medtronic,Paradigm Veo 754CM,2.7A,1,Clinic", {"ICSMA-18-219-02", "ICSMA-19-178-01"}),
    ],
)
def test_expected_matches(
    kb: KnowledgeBase, catalogue: ModelCatalogue, row: str, expected: set[str]
) -> None:
    report = _match(kb, catalogue, row + "\n")
    assert set(_ids(report)) == expected
    assert not report.unknown_models


def test_unknown_models_are_reported_not_dropped(
    kb: KnowledgeBase, catalogue: ModelCatalogue
) -> None:
    report = _match(
        kb,
        catalogue,
        "Fresenius Kabi,Agilia VP,3.2,9,ICU\nBD,Alaris 8015,9.19,1,ICU\nAcme,Pump 9000,1,2,ED\n",
    )
    assert [(u.row.line, u.row.model, u.row.count) for u in report.unknown_models] == [
        (2, "Agilia VP", 9),
        (4, "Pump 9000", 2),
    ]
    assert len(report.identified) == 1


def test_missing_or_unreadable_version_is_possibly_affected(
    kb: KnowledgeBase, catalogue: ModelCatalogue
) -> None:
    report = _match(
        kb,
        catalogue,
        "BD,Alaris 8015,,1,ICU\nB. Braun,Infusomat Space,686E,1,OR\nBD,Alaris 8015,n/a?,1,ICU\n",
    )
    for line in (2, 3, 4):
        statuses = set(_ids(report, line).values())
        assert statuses == {MatchStatus.POSSIBLY_AFFECTED}, line
    reasons = [m.reason for m in report.matches if m.row.line == 2]
    assert all("no software version" in r for r in reasons)


def test_every_cve_of_a_match_belongs_to_its_products(
    kb: KnowledgeBase, catalogue: ModelCatalogue
) -> None:
    report = _match(kb, catalogue, "BD,Alaris Systems Manager,12.3,1,DC\n")
    (match,) = report.matches
    assert match.advisory.id == "ICSMA-23-194-01"
    assert match.cves == ["CVE-2023-30563", "CVE-2023-30564", "CVE-2023-30565"]
