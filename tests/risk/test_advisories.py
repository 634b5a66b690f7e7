"""The advisory knowledge base: complete, sourced, and validated strictly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pumpguard.risk import (
    AdvisoryError,
    KnowledgeBase,
    ModelCatalogue,
    advisory_json_schema,
    load_knowledge_base,
    parse_advisory,
)
from pumpguard.risk.advisories import ADVISORIES_DIR
from pumpguard.risk.versions import parse_version

ROOT = Path(__file__).resolve().parents[2]

# Every advisory REFERENCE.md section 6 names, with the CVEs the advisory itself lists.
EXPECTED = {
    "ICSMA-19-178-01": {"CVE-2019-10964"},
    "ICSMA-18-219-02": {"CVE-2018-10634", "CVE-2018-14781"},
    "ICSMA-22-263-01": {"CVE-2022-32537"},
    "ICSMA-16-279-01": {"CVE-2016-5084", "CVE-2016-5085", "CVE-2016-5086"},
    "ICSMA-20-079-01": {"CVE-2020-10627"},
    "ICSA-15-125-01B": {"CVE-2015-3459", "CVE-2014-5406", "CVE-2015-1011"},
    "ICSA-15-161-01": {"CVE-2015-3956", "CVE-2015-3954", "CVE-2015-3953"},
    "ICSA-15-174-01": {"CVE-2015-3965"},
    "ICSMA-17-250-02A": {"CVE-2017-12725", "CVE-2017-12721", "CVE-2017-12720"},
    "ICSMA-19-164-01": {"CVE-2019-10959", "CVE-2019-10962"},
    "ICSMA-20-317-01": {"CVE-2020-25165"},
    "ICSMA-23-194-01": {"CVE-2023-30559", "CVE-2023-30560", "CVE-2023-30561", "CVE-2023-30562"}
    | {"CVE-2023-30563"},
    "ICSMA-21-294-01": {f"CVE-2021-3388{n}" for n in (2, 3, 4, 5, 6)},
    "ICSMA-20-170-04": {"CVE-2020-12039", "CVE-2020-12040", "CVE-2020-12045"},
    "ICSMA-22-251-01": {"CVE-2022-26390", "CVE-2022-26394"},
}

# Published CVSS v3 base scores quoted in REFERENCE.md section 6 (where it quotes one and
# the advisory agrees); each must equal the score computed from the stored vector.
SCORES = {
    "CVE-2019-10964": 7.1,
    "CVE-2018-10634": 4.8,
    "CVE-2018-14781": 5.3,
    "CVE-2016-5084": 6.5,
    "CVE-2016-5085": 4.2,
    "CVE-2016-5086": 6.4,
    "CVE-2020-10627": 7.3,
    "CVE-2017-12725": 9.8,
    "CVE-2019-10959": 10.0,
}


def test_every_reference_advisory_is_present_with_its_cves(kb: KnowledgeBase) -> None:
    for advisory_id, cves in EXPECTED.items():
        advisory = kb.get(advisory_id)
        assert cves <= {v.cve for v in advisory.vulnerabilities}, advisory_id


@pytest.mark.parametrize(("cve", "score"), sorted(SCORES.items()))
def test_published_scores(kb: KnowledgeBase, cve: str, score: float) -> None:
    vuln = next(v for a in kb for v in a.vulnerabilities if v.cve == cve)
    assert vuln.cvss_v3_base == score


def test_every_entry_is_sourced_and_mitigated(kb: KnowledgeBase) -> None:
    for advisory in kb:
        assert any(s.id == advisory.id for s in advisory.sources), advisory.id
        assert advisory.mitigations
        for vuln in advisory.vulnerabilities:
            assert vuln.threats(), f"{vuln.cve} realises no SP 1800-8 threat"
            if not vuln.verified:
                assert vuln.note, f"{vuln.cve} is unverified without saying why"
        for product in advisory.products:
            if not product.verified:
                assert product.note


def test_affected_ranges_as_the_advisories_state_them(kb: KnowledgeBase) -> None:
    def ranges(advisory_id: str, model: str) -> list[str]:
        return [
            r.describe()
            for p in kb.get(advisory_id).products
            if p.model == model
            for r in p.versions
        ]

    assert ranges("ICSMA-20-317-01", "bd-alaris-pcu-8015") == ["<= 9.33.1"]
    assert ranges("ICSMA-23-194-01", "bd-alaris-pcu-8015") == ["<= 12.1.3"]
    assert ranges("ICSMA-17-250-02A", "smiths-medfusion-4000") == ["versions 1.1, 1.5, 1.6"]
    assert ranges("ICSA-15-125-01B", "icu-lifecare-pca") == ["<= 5.0"]
    assert ranges("ICSA-15-161-01", "icu-plum-a-plus") == ["<= 13.4"]
    assert ranges("ICSA-15-161-01", "icu-plum-a-plus-3") == ["<= 13.6"]
    assert ranges("ICSMA-19-178-01", "medtronic-paradigm-523-723") == ["<= 2.4A"]
    assert ranges("ICSMA-19-178-01", "medtronic-paradigm-veo-554cm-754cm") == ["<= 2.7A"]
    assert ranges("ICSMA-19-178-01", "medtronic-minimed-508") == ["all versions"]
    product = kb.get("ICSMA-17-250-02A").products[0]
    assert product.fixed_in == "1.6.1"


def _valid() -> dict[str, Any]:
    data = yaml.safe_load((ADVISORIES_DIR / "icsma-17-250-02a.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _problems(data: dict[str, Any], catalogue: ModelCatalogue) -> str:
    with pytest.raises(AdvisoryError) as caught:
        parse_advisory(data, "broken.yaml", catalogue)
    return str(caught.value)


def test_the_fixture_entry_is_valid(catalogue: ModelCatalogue) -> None:
    parse_advisory(_valid(), "ok.yaml", catalogue)


def test_invalid_cvss_vector_fails(catalogue: ModelCatalogue) -> None:
    data = _valid()
    data["vulnerabilities"][0]["cvss_v3"] = "CVSS:3.0/AV:X/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert "invalid CVSS v3 vector" in _problems(data, catalogue)


def test_incomplete_cvss_vector_fails(catalogue: ModelCatalogue) -> None:
    data = _valid()
    data["vulnerabilities"][0]["cvss_v3"] = "CVSS:3.0/AV:N/AC:H"
    assert "vulnerabilities[0].cvss_v3" in _problems(data, catalogue)


def test_score_that_disagrees_with_its_vector_fails(catalogue: ModelCatalogue) -> None:
    data = _valid()
    data["vulnerabilities"][0]["cvss_v3_base"] = 9.9
    assert "does not match" in _problems(data, catalogue)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("sources"), "sources"),
        (lambda d: d.update(id="ICSMA-17-250"), "id"),
        (lambda d: d["vulnerabilities"][0].update(cve="CVE-17-12718"), "vulnerabilities[0].cve"),
        (lambda d: d["vulnerabilities"][0].update(cwe="120"), "vulnerabilities[0].cwe"),
        (lambda d: d["vulnerabilities"][0].update(weaknesses=["rust"]), "weaknesses"),
        (lambda d: d["vulnerabilities"][0].update(products=["nope"]), "unknown products"),
        (lambda d: d["products"][0].update(model="acme-pump"), "unknown catalogue model"),
        (
            lambda d: d["products"][0].update(versions=[{"all": True, "at_most": "1"}]),
            "exactly one",
        ),
        (lambda d: d["products"][0].update(versions=[{"at_least": "2", "at_most": "1"}]), "empty"),
        (lambda d: d["products"][0].update(versions=[{"at_most": "?"}]), "not a version"),
        (lambda d: d.update(colour="red"), "Extra inputs"),
    ],
)
def test_malformed_entries_fail_and_say_where(
    catalogue: ModelCatalogue, mutate: Any, where: str
) -> None:
    data = copy.deepcopy(_valid())
    mutate(data)
    assert where in _problems(data, catalogue)


def test_a_malformed_file_fails_the_whole_knowledge_base(tmp_path: Path) -> None:
    for path in ADVISORIES_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text("utf-8"), "utf-8")
    broken = tmp_path / "icsma-20-317-01.yaml"
    broken.write_text(broken.read_text("utf-8").replace("AV:N/AC:L", "AV:Q/AC:L"), "utf-8")
    with pytest.raises(AdvisoryError, match=r"icsma-20-317-01\.yaml.*cvss_v3"):
        load_knowledge_base(tmp_path)


def test_file_name_must_match_the_id(tmp_path: Path) -> None:
    source = ADVISORIES_DIR / "icsma-20-317-01.yaml"
    (tmp_path / "wrong-name.yaml").write_text(source.read_text("utf-8"), "utf-8")
    with pytest.raises(AdvisoryError, match=r"should be named icsma-20-317-01\.yaml"):
        load_knowledge_base(tmp_path)


def test_published_schema_is_current() -> None:
    published = json.loads((ROOT / "docs/risk/advisory.schema.json").read_text("utf-8"))
    assert published == advisory_json_schema(), (
        "stale: run pumpguard risk schema > docs/risk/advisory.schema.json"
    )


def test_every_advisory_file_validates_against_the_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = advisory_json_schema()
    for path in sorted(ADVISORIES_DIR.glob("*.yaml")):
        data = json.loads(json.dumps(yaml.safe_load(path.read_text("utf-8")), default=str))
        jsonschema.validate(data, schema)


def test_version_bounds_parse(kb: KnowledgeBase) -> None:
    for advisory in kb:
        for product in advisory.products:
            for r in product.versions:
                for v in [*(r.exactly or []), r.at_least, r.at_most, r.below]:
                    if v is not None:
                        parse_version(v)
