"""Inventory import: columns, counts, encodings and malformed files, reported by location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pumpguard.risk import InventoryError, load_inventory

HEADER = "manufacturer,model,software_version,count,zone"


def _write(tmp_path: Path, text: str, name: str = "inv.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _issues(path: Path) -> str:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.issues
    return str(caught.value)


def test_csv_with_extra_columns_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{HEADER},asset_tag\nBD,Alaris PC Unit 8015,9.19,12,ICU,T-1\n")
    inventory = load_inventory(path)
    row = inventory.rows[0]
    assert (row.manufacturer, row.model, row.software_version, row.count, row.zone) == (
        "BD",
        "Alaris PC Unit 8015",
        "9.19",
        12,
        "ICU",
    )
    assert row.extra == {"asset_tag": "T-1"}
    assert row.line == 2
    assert inventory.extra_columns == ("asset_tag",)


def test_header_names_are_forgiving(tmp_path: Path) -> None:
    text = "Manufacturer,Model,Software Version,COUNT,zone\nBD,Alaris 8015,9.19,1,ICU\n"
    assert load_inventory(_write(tmp_path, text)).rows[0].software_version == "9.19"


def test_utf8_bom_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_bytes(
        (
            "\ufeffmanufacturer;model;software_version;count;zone\n"
            "B. Braun;Perfusor Space;L81;2;OR\n"
        ).encode()
    )
    assert load_inventory(path).rows[0].model == "Perfusor Space"


@pytest.mark.parametrize("missing", ["count", "zone", "software_version"])
def test_missing_required_column_is_named(tmp_path: Path, missing: str) -> None:
    columns = [c for c in HEADER.split(",") if c != missing]
    text = ",".join(columns) + "\n" + ",".join("x" for _ in columns) + "\n"
    message = _issues(_write(tmp_path, text))
    assert f"missing required column(s): {missing}" in message


@pytest.mark.parametrize(
    ("count", "reason"),
    [("twelve", "whole number"), ("-3", "whole number"), ("0", "at least 1"), ("2.5", "whole")],
)
def test_bad_count_is_located(tmp_path: Path, count: str, reason: str) -> None:
    text = f"{HEADER}\nBD,Alaris 8015,9.19,4,ICU\nBD,Alaris 8015,9.19,{count},ICU\n"
    message = _issues(_write(tmp_path, text))
    assert "line 3, column 'count'" in message
    assert reason in message


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    text = f"{HEADER}\nBD,,9.19,4,ICU\nBD,Alaris 8015,9.19,x,ICU\nBD,Alaris,1,2,3,4,5\n"
    with pytest.raises(InventoryError) as caught:
        load_inventory(_write(tmp_path, text))
    lines = sorted(i.line or 0 for i in caught.value.issues)
    assert lines == [2, 3, 4]


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in _issues(_write(tmp_path, ""))


def test_header_only(tmp_path: Path) -> None:
    assert "no devices" in _issues(_write(tmp_path, HEADER + "\n"))


def test_wrong_encoding_is_named_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        f"{HEADER}\nB. Braun,Perfusor Space,L81,2,Salle d'op\xe9ration\n".encode("latin-1")
    )
    message = _issues(path)
    assert "not UTF-8" in message
    assert "0xe9" in message
    assert "line 2" in message


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_bytes(b"\x00\x01\x02manufacturer")
    assert "binary" in _issues(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in _issues(tmp_path / "nope.csv")


def test_json_list_and_object(tmp_path: Path) -> None:
    devices = [
        {
            "manufacturer": "Smiths Medical",
            "model": "Medfusion 4000",
            "software_version": "1.6",
            "count": 3,
            "zone": "NICU",
            "room": "12",
        }
    ]
    for payload in (devices, {"devices": devices}):
        path = _write(tmp_path, json.dumps(payload), "inv.json")
        row = load_inventory(path).rows[0]
        assert row.count == 3
        assert row.extra == {"room": "12"}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"pumps": []}', "expected a list"),
        ("[1, 2]", "not an object"),
        ('[{"manufacturer": "BD", "model": "Alaris", "count": 1}]', "missing required column"),
        (
            '[{"manufacturer": "BD", "model": "A", "software_version": "1",'
            ' "count": true, "zone": ""}]',
            "count",
        ),
    ],
)
def test_malformed_json(tmp_path: Path, payload: str, words: str) -> None:
    assert words in _issues(_write(tmp_path, payload, "inv.json"))
