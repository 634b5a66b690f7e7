from __future__ import annotations

from pathlib import Path

from sigma.collection import SigmaCollection

from pumpguard.interop.codes import InteropEvent
from pumpguard.link.codes import LinkEventCode
from pumpguard.monitor import RuleEngine, rule_to_sigma, sigma_filename
from pumpguard.monitor.live import LiveEvent
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.pki.events import PkiEvent
from pumpguard.server.errors import ServerEventCode
from pumpguard.transport.codes import TransportEvent
from pumpguard.updates.events import UpdateEvent

SIGMA_DIR = Path(__file__).resolve().parents[2] / "rules" / "sigma"

# Codes that record normal operation, not refusals; no rule should fire on them.
_BENIGN = {
    LinkEventCode.PAIRING_COMPLETED,
    PkiEvent.CERT_ISSUED,
    PkiEvent.CERT_REVOKED,
    PkiEvent.CERT_RENEWED,
    UpdateEvent.VERIFIED,
    UpdateEvent.PUBLISHED,
    UpdateEvent.REPOSITORY_UNAVAILABLE,
    UpdateEvent.LOCAL_FAILURE,
    PkiEvent.TLS_PEER_REFUSED_US,
    PkiEvent.TLS_HANDSHAKE_FAILED,
    PkiEvent.TLS_HOSTNAME_MISMATCH,
    TransportEvent.SESSION_REVOKED,
    TransportEvent.CONNECTION_LIMIT,
    InteropEvent.HANDLER_FAILED,
    ServerEventCode.UNAUTHENTICATED,
    ServerEventCode.SESSION_EXPIRED,
    ServerEventCode.INVALID_REQUEST,
}
_COVERED = (
    InteropEvent,
    LinkEventCode,
    PkiEvent,
    TransportEvent,
    UpdateEvent,
    LiveEvent,
    ServerEventCode,
)
# Server codes whose rules belong to another area (the drug library's two-person rule, asset
# life cycle and sealed secrets), listed so that adding one is a decision, not an accident.
_SERVER_WITHOUT_RULE_YET = {
    ServerEventCode.ILLEGAL_TRANSITION,
    ServerEventCode.SEALED_SECRET_BROKEN,
}


def test_the_rule_set_loads() -> None:
    engine = RuleEngine(DEFAULT_RULES, lambda d: None)
    assert len(engine.rules) == len(DEFAULT_RULES) >= 10


def test_every_refusal_code_of_the_covered_packages_has_a_rule() -> None:
    covered = {code for rule in DEFAULT_RULES for code in rule.codes}
    published = {str(code) for enum in _COVERED for code in enum}
    published -= {str(c) for c in _SERVER_WITHOUT_RULE_YET}
    published -= {str(c) for c in ServerEventCode if str(c).startswith("server.library.")}
    missing = sorted(published - covered - {str(c) for c in _BENIGN})
    assert missing == [], f"no rule matches these refusal codes: {missing}"


def test_rules_only_name_codes_that_exist() -> None:
    published = {str(code) for enum in _COVERED for code in enum}
    unknown = sorted({c for r in DEFAULT_RULES for c in r.codes} - published)
    assert unknown == []


def test_the_published_sigma_rules_are_current_and_load_in_pysigma() -> None:
    expected = {sigma_filename(r): rule_to_sigma(r) for r in DEFAULT_RULES}
    present = {p.name: p.read_text(encoding="utf-8") for p in SIGMA_DIR.glob("*.yml")}
    assert present == expected, (
        "rules/sigma is stale: run `pumpguard alerts rules --sigma-dir rules/sigma`"
    )
    collection = SigmaCollection.from_yaml("---\n".join(expected.values()))
    collection.resolve_rule_references()
    assert len(collection.rules) >= len(DEFAULT_RULES)
