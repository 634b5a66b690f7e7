"""Traceability of the safety case: docs/safety/hazards.md against the test suite.

The hazard table is only worth something while every mitigation it claims is verified by a test
that exists. This module parses the markdown tables of the document and fails when:

* the hazard table has fewer than ``MIN_HAZARDS`` rows, or its columns are not the GPCA ones;
* a hazard id is malformed (``H-nn``) or not unique (across the hazard table and the
  "Not mitigated here" table);
* a category is not a GPCA hazard category (or one of the two documented extra ones);
* a row does not name exactly one well-formed safety requirement (``SR-nn``);
* a ``Verified by`` cell names no test, or names a pytest node id that does not resolve. Node
  ids are resolved by parsing the test file with ``ast``: ``path::function``, ``path::Class``,
  ``path::Class::method`` and parametrized ``name[id]``; a module-level ``TestX = ...`` alias
  (hypothesis state machines) counts as a test class;
* a requirement ``SR-nn`` mentioned anywhere in the document is not verified by any row, or is
  used by a row but not defined in the requirements table;
* any pytest node id quoted anywhere else in the document does not resolve.

The checker is a plain function returning a list of problems, so that its own negative tests
(at the end) can feed it broken documents and see each problem reported.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "safety" / "hazards.md"
MIN_HAZARDS = 30

HAZARD_COLUMNS = (
    "ID",
    "Category",
    "Hazard",
    "Cause",
    "Action",
    "Mitigation",
    "Safety requirement",
    "Verified by",
)
RESIDUAL_COLUMNS = ("ID", "Category", "Hazard", "Cause", "Why not mitigated here")
REQUIREMENT_COLUMNS = ("SR", "Requirement")

GPCA_CATEGORIES = frozenset(
    {
        "operational",
        "environmental",
        "electrical",
        "hardware",
        "software",
        "mechanical",
        "biological/chemical",
        "use",
    }
)
EXTRA_CATEGORIES = frozenset({"security", "communication"})
CATEGORIES = GPCA_CATEGORIES | EXTRA_CATEGORIES
ACTIONS = frozenset({"alarm", "log", "stop", "refuse"})

HAZARD_ID = re.compile(r"H-\d{2}")
SR_ID = re.compile(r"SR-\d{2}")
SR_MENTION = re.compile(r"\bSR-\w+")
NODE_ID = re.compile(r"`(tests/[^`\s]+\.py::[^`\s]+)`")
TICKED = re.compile(r"`([^`]*)`")
SEPARATORS = re.compile(r"(?:<br\s*/?>|[,;\s])*")


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]
    """(line number, cells) of each body row."""


def _cells(line: str) -> tuple[str, ...]:
    body = line.strip()
    body = body.removeprefix("|").removesuffix("|")
    return tuple(cell.strip() for cell in body.split("|"))


def _is_rule(cells: tuple[str, ...]) -> bool:
    return all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells)


def parse_tables(text: str) -> list[Table]:
    """Every pipe table of a markdown text: header, separator rule, body rows."""
    lines = text.splitlines()
    tables: list[Table] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|") and i + 1 < len(lines):
            header = _cells(line)
            rule = _cells(lines[i + 1])
            if lines[i + 1].lstrip().startswith("|") and _is_rule(rule):
                rows = []
                i += 2
                while i < len(lines) and lines[i].lstrip().startswith("|"):
                    rows.append((i + 1, _cells(lines[i])))
                    i += 1
                tables.append(Table(header, tuple(rows)))
                continue
        i += 1
    return tables


# -- resolving pytest node ids with ast ---------------------------------------------------------


def _is_parametrized(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "parametrize":
            return True
    return False


def _module_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level functions, classes and simple-name assignments (``TestX = M.TestCase``)."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _method(
    cls: ast.ClassDef, name: str, names: dict[str, ast.AST], seen: frozenset[str] = frozenset()
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """A method of ``cls`` or of a base class defined in the same module."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id not in seen:
            parent = names.get(base.id)
            if isinstance(parent, ast.ClassDef):
                found = _method(parent, name, names, seen | {cls.name})
                if found is not None:
                    return found
    return None


def resolve_node_id(node_id: str, root: Path = ROOT) -> str | None:
    """None if ``node_id`` names a collectable test in the repository, else why not."""
    path_text, sep, rest = node_id.partition("::")
    if not sep or not rest:
        return f"{node_id}: not a pytest node id (path::name)"
    path = root / path_text
    if not re.fullmatch(r"test_\w+\.py|\w+_test\.py", path.name):
        return f"{node_id}: {path.name} is not a test module name"
    if not path.is_file():
        return f"{node_id}: no file {path_text}"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return f"{node_id}: {path_text} does not parse: {exc}"
    match = re.fullmatch(r"([^\[\]]+)(\[[^\[\]]+\])?", rest)
    if match is None:
        return f"{node_id}: malformed name {rest!r}"
    parts, param = match.group(1).split("::"), match.group(2)
    names = _module_names(tree)
    node = names.get(parts[0])
    if node is None:
        return f"{node_id}: {parts[0]!r} is not defined at module level in {path_text}"
    if len(parts) == 1:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("test"):
                return f"{node_id}: {node.name!r} is not a test function"
            if param is not None and not _is_parametrized(node):
                return f"{node_id}: {node.name!r} is not parametrized"
            return None
        if not parts[0].startswith("Test"):
            return f"{node_id}: {parts[0]!r} is not a test class"
        if param is not None:
            return f"{node_id}: a class has no parameters"
        return None
    if len(parts) > 2:
        return f"{node_id}: nested classes are not supported"
    if not isinstance(node, ast.ClassDef) or not node.name.startswith("Test"):
        return f"{node_id}: {parts[0]!r} is not a test class"
    method = _method(node, parts[1], names)
    if method is None:
        return f"{node_id}: class {parts[0]} has no method {parts[1]!r}"
    if not method.name.startswith("test"):
        return f"{node_id}: {method.name!r} is not a test method"
    if param is not None and not _is_parametrized(method):
        return f"{node_id}: {method.name!r} is not parametrized"
    return None


# -- checking the document --------------------------------------------------------------------


def _find(tables: list[Table], header: tuple[str, ...]) -> list[Table]:
    return [t for t in tables if t.header == header]


def _verified_by(cell: str) -> tuple[list[str], str]:
    """The node ids of a Verified-by cell and whatever else is in it (should be nothing)."""
    ids = TICKED.findall(cell)
    rest = TICKED.sub(" ", cell)
    return ids, "" if SEPARATORS.fullmatch(rest) else rest.strip()


def check_document(text: str, root: Path = ROOT, min_hazards: int = MIN_HAZARDS) -> list[str]:
    """Every problem of a hazard analysis document; empty when it is consistent."""
    problems: list[str] = []
    tables = parse_tables(text)
    hazard_tables = _find(tables, HAZARD_COLUMNS)
    residual_tables = _find(tables, RESIDUAL_COLUMNS)
    requirement_tables = _find(tables, REQUIREMENT_COLUMNS)
    if len(hazard_tables) != 1:
        problems.append(
            f"expected one hazard table with columns {' | '.join(HAZARD_COLUMNS)}, "
            f"found {len(hazard_tables)}"
        )
    if len(requirement_tables) != 1:
        problems.append(f"expected one requirements table, found {len(requirement_tables)}")
    if len(residual_tables) != 1:
        problems.append(f"expected one 'Not mitigated here' table, found {len(residual_tables)}")
    hazards = hazard_tables[0].rows if hazard_tables else ()
    residual = residual_tables[0].rows if residual_tables else ()

    if len(hazards) < min_hazards:
        problems.append(f"hazard table has {len(hazards)} rows, fewer than {min_hazards}")

    defined: dict[str, str] = {}
    for line, cells in requirement_tables[0].rows if requirement_tables else ():
        sr = cells[0] if cells else ""
        if len(cells) != len(REQUIREMENT_COLUMNS) or not SR_ID.fullmatch(sr):
            problems.append(f"line {line}: malformed requirement row {cells!r}")
        elif sr in defined:
            problems.append(f"line {line}: requirement {sr} defined twice")
        elif not cells[1]:
            problems.append(f"line {line}: requirement {sr} has no text")
        else:
            defined[sr] = cells[1]

    seen_ids: dict[str, int] = {}
    verified: dict[str, list[str]] = {}
    for kind, rows, width in (
        ("hazard", hazards, len(HAZARD_COLUMNS)),
        ("residual", residual, len(RESIDUAL_COLUMNS)),
    ):
        for line, cells in rows:
            where = f"line {line}"
            if len(cells) != width:
                problems.append(f"{where}: {kind} row has {len(cells)} cells, expected {width}")
                continue
            hazard_id, category = cells[0], cells[1]
            if not HAZARD_ID.fullmatch(hazard_id):
                problems.append(f"{where}: malformed hazard id {hazard_id!r} (expected H-nn)")
            elif hazard_id in seen_ids:
                first = seen_ids[hazard_id]
                problems.append(f"{where}: hazard id {hazard_id} is not unique (also line {first})")
            else:
                seen_ids[hazard_id] = line
            if category not in CATEGORIES:
                problems.append(f"{where}: {hazard_id}: unknown category {category!r}")
            if any(not cell for cell in cells):
                problems.append(f"{where}: {hazard_id}: empty cell")
            if kind == "residual":
                continue
            actions = {a.strip() for a in re.split(r"[,+;/]", cells[4]) if a.strip()}
            if not actions or not actions <= ACTIONS:
                problems.append(
                    f"{where}: {hazard_id}: action {cells[4]!r} is not a combination of "
                    f"{', '.join(sorted(ACTIONS))}"
                )
            sr = cells[6]
            if not SR_ID.fullmatch(sr):
                problems.append(f"{where}: {hazard_id}: malformed safety requirement {sr!r}")
                continue
            if sr not in defined:
                problems.append(f"{where}: {hazard_id}: {sr} is not in the requirements table")
            ids, leftover = _verified_by(cells[7])
            if leftover:
                problems.append(
                    f"{where}: {hazard_id}: Verified by holds more than node ids: {leftover!r}"
                )
            if not ids:
                problems.append(f"{where}: {hazard_id}: Verified by names no test")
            good = []
            for node_id in ids:
                why = resolve_node_id(node_id, root)
                if why is None:
                    good.append(node_id)
                else:
                    problems.append(f"{where}: {hazard_id}: {why}")
            verified.setdefault(sr, []).extend(good)

    for sr in sorted(set(SR_MENTION.findall(text))):
        if not SR_ID.fullmatch(sr):
            problems.append(f"malformed requirement id {sr!r} in the document")
        elif not verified.get(sr):
            problems.append(f"{sr} is mentioned but no hazard row verifies it with a test")

    for node_id in sorted(set(NODE_ID.findall(text))):
        why = resolve_node_id(node_id, root)
        if why is not None and not any(why in p for p in problems):
            problems.append(why)
    return problems


# -- the safety case itself ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> str:
    return DOC.read_text(encoding="utf-8")


def test_safety_case_is_traceable(document: str) -> None:
    problems = check_document(document)
    assert not problems, "docs/safety/hazards.md:\n" + "\n".join(problems)


def test_hazard_table_covers_the_gpca_categories(document: str) -> None:
    (table,) = _find(parse_tables(document), HAZARD_COLUMNS)
    used = {cells[1] for _, cells in table.rows}
    assert used >= GPCA_CATEGORIES, f"no hazard in {sorted(GPCA_CATEGORIES - used)}"


def test_state_machine_requirements_are_kept(document: str) -> None:
    """SR-01..SR-06 are the properties the hypothesis state machines check."""
    (table,) = _find(parse_tables(document), REQUIREMENT_COLUMNS)
    defined = {cells[0] for _, cells in table.rows}
    assert {f"SR-0{n}" for n in range(1, 7)} <= defined
    machine = (ROOT / "tests/devices/test_pump_state_machine.py").read_text(encoding="utf-8")
    for n in range(1, 7):
        assert f"SR-0{n}" in machine


# -- the checker checks -------------------------------------------------------------------------

_REQUIREMENTS = """
| SR | Requirement |
|----|-------------|
| SR-01 | Never more than confirmed. |
"""
_RESIDUAL = """
| ID | Category | Hazard | Cause | Why not mitigated here |
|----|----------|--------|-------|------------------------|
| H-90 | mechanical | Free flow | Set removed | Hardware clamp |
"""
_GOOD_ROW = (
    "| H-01 | operational | Over-infusion | Typo | alarm, log | Limits | SR-01 | "
    "`tests/devices/test_infusion_pump.py::test_hard_limit_blocks_programme_from_any_source` |"
)


def _doc(*rows: str, requirements: str = _REQUIREMENTS, residual: str = _RESIDUAL) -> str:
    head = "| " + " | ".join(HAZARD_COLUMNS) + " |\n|" + "---|" * len(HAZARD_COLUMNS)
    return "\n".join(["# Hazards", requirements, head, *rows, residual])


def test_checker_accepts_a_small_consistent_table() -> None:
    assert check_document(_doc(_GOOD_ROW), min_hazards=1) == []


def test_checker_reports_a_test_that_does_not_exist() -> None:
    row = _GOOD_ROW.replace("from_any_source", "from_nowhere")
    problems = check_document(_doc(row), min_hazards=1)
    assert any("test_hard_limit_blocks_programme_from_nowhere" in p for p in problems), problems
    assert any("SR-01 is mentioned but no hazard row verifies it" in p for p in problems)


def test_checker_does_not_find_tests_by_string_search() -> None:
    """A name that only appears in a docstring or a call is not a test."""
    fake = "tests/devices/test_infusion_pump.py::heparin"
    row = _GOOD_ROW.replace(
        "tests/devices/test_infusion_pump.py::test_hard_limit_blocks_programme_from_any_source",
        fake,
    )
    assert any("not a test function" in p for p in check_document(_doc(row), min_hazards=1))


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("| SR-01 |", "| SR-1 |", "malformed safety requirement 'SR-1'"),
        ("| SR-01 |", "| SR-01, SR-02 |", "malformed safety requirement"),
        ("| SR-01 |", "|  |", "malformed safety requirement ''"),
        ("| operational |", "| cosmic |", "unknown category 'cosmic'"),
        ("| H-01 |", "| H1 |", "malformed hazard id 'H1'"),
        ("| alarm, log |", "| shrug |", "action 'shrug'"),
        ("`tests/", "see `tests/", "Verified by holds more than node ids"),
        ("test_infusion_pump.py::", "test_nowhere.py::", "no file tests/devices/test_nowhere.py"),
    ],
)
def test_checker_reports_a_bad_row(old: str, new: str, words: str) -> None:
    row = _GOOD_ROW.replace(old, new, 1)
    assert row != _GOOD_ROW
    problems = check_document(_doc(row), min_hazards=1)
    assert any(words in p for p in problems), problems


def test_checker_reports_duplicate_ids_and_too_few_rows() -> None:
    problems = check_document(_doc(_GOOD_ROW, _GOOD_ROW), min_hazards=3)
    assert any("hazard id H-01 is not unique" in p for p in problems), problems
    assert any("has 2 rows, fewer than 3" in p for p in problems), problems
    clash = _RESIDUAL.replace("H-90", "H-01")
    problems = check_document(_doc(_GOOD_ROW, residual=clash), min_hazards=1)
    assert any("hazard id H-01 is not unique" in p for p in problems), problems


def test_checker_reports_a_requirement_without_test() -> None:
    requirements = _REQUIREMENTS + "| SR-07 | Not verified by anything. |\n"
    problems = check_document(_doc(_GOOD_ROW, requirements=requirements), min_hazards=1)
    assert problems == ["SR-07 is mentioned but no hazard row verifies it with a test"]
    mentioned = _RESIDUAL.replace("Hardware clamp", "Hardware clamp, see SR-09")
    problems = check_document(_doc(_GOOD_ROW, residual=mentioned), min_hazards=1)
    assert problems == ["SR-09 is mentioned but no hazard row verifies it with a test"]


def test_checker_reports_an_undefined_requirement() -> None:
    row = _GOOD_ROW.replace("SR-01", "SR-02")
    problems = check_document(_doc(row), min_hazards=1)
    assert any("SR-02 is not in the requirements table" in p for p in problems), problems
    assert any("SR-01 is mentioned but no hazard row verifies it" in p for p in problems)


def test_checker_reports_a_missing_table() -> None:
    problems = check_document(_doc(_GOOD_ROW, residual=""), min_hazards=1)
    assert problems == ["expected one 'Not mitigated here' table, found 0"]


def test_checker_resolves_node_id_forms(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_sample.py").write_text(
        "import pytest\n"
        "\n"
        "def helper():\n    pass\n"
        "\n"
        "def test_plain():\n    pass\n"
        "\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_param(x):\n    pass\n"
        "\n"
        "class TestBase:\n    def test_inherited(self):\n        pass\n"
        "\n"
        "class TestChild(TestBase):\n"
        "    @pytest.mark.parametrize('y', ['a'])\n"
        "    def test_own(self, y):\n        pass\n"
        "\n"
        "class Machine:\n    pass\n"
        "\n"
        "TestMachine = Machine\n"
        "\n"
        "def outer():\n    def test_nested():\n        pass\n",
        encoding="utf-8",
    )
    good = [
        "tests/test_sample.py::test_plain",
        "tests/test_sample.py::test_param[1]",
        "tests/test_sample.py::TestBase",
        "tests/test_sample.py::TestBase::test_inherited",
        "tests/test_sample.py::TestChild::test_inherited",
        "tests/test_sample.py::TestChild::test_own[a]",
        "tests/test_sample.py::TestMachine",
    ]
    for node_id in good:
        assert resolve_node_id(node_id, tmp_path) is None, node_id
    bad = {
        "tests/test_sample.py::test_missing": "not defined at module level",
        "tests/test_sample.py::test_nested": "not defined at module level",
        "tests/test_sample.py::helper": "not a test function",
        "tests/test_sample.py::test_plain[1]": "not parametrized",
        "tests/test_sample.py::TestBase::test_missing": "has no method",
        "tests/test_sample.py::Machine": "not a test class",
        "tests/test_sample.py::TestMachine::test_x": "not a test class",
        "tests/test_other.py::test_plain": "no file",
        "tests/sample.py::test_plain": "not a test module name",
        "tests/test_sample.py": "not a pytest node id",
    }
    for node_id, words in bad.items():
        why = resolve_node_id(node_id, tmp_path)
        assert why is not None and words in why, (node_id, why)
