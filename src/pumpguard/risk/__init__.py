"""Questionnaire-based risk assessment of real pump inventories (SP 1800-8 method).

Advisory knowledge base -> inventory normalisation and version matching -> questionnaires
-> scored risk register with controls traced to CSF 2.0, SP 800-53 r5, IEC 80001-2-2 and
pumpguard's own tests -> HTML, PDF and JSON reports. Services layer: it may use
``pumpguard.clinical`` but nothing above the services layer.
"""

from pumpguard.risk.advisories import (
    Advisory,
    AdvisoryError,
    AdvisoryIssue,
    KnowledgeBase,
    Mitigation,
    Product,
    Threat,
    VersionRange,
    Vulnerability,
    Weakness,
    advisory_json_schema,
    load_knowledge_base,
    parse_advisory,
)
from pumpguard.risk.controls import Control, ControlCatalogue, ControlStatus, load_controls
from pumpguard.risk.inventory import (
    Inventory,
    InventoryError,
    InventoryIssue,
    InventoryRow,
    Match,
    MatchReport,
    MatchStatus,
    UnknownModel,
    load_inventory,
    match_inventory,
    parse_inventory_csv,
    parse_inventory_json,
)
from pumpguard.risk.models import (
    DeviceKind,
    DeviceModel,
    ModelCatalogue,
    TherapyRole,
    load_catalogue,
    normalise_text,
)
from pumpguard.risk.questionnaire import (
    AnswersError,
    AnswerSet,
    Question,
    Questionnaire,
    load_answers,
    load_questionnaires,
    parse_answers,
)
from pumpguard.risk.register import Rating, Risk, RiskRegister, Score, build_register
from pumpguard.risk.report import register_json, render_html, write_pdf
from pumpguard.risk.threat_model import (
    THREAT_MODEL_FILE,
    ElementKind,
    Stride,
    ThreatModel,
    load_threat_model,
    render_threat_model,
)
from pumpguard.risk.versions import PumpVersion, VersionError, parse_version

__all__ = [
    "THREAT_MODEL_FILE",
    "Advisory",
    "AdvisoryError",
    "AdvisoryIssue",
    "AnswerSet",
    "AnswersError",
    "Control",
    "ControlCatalogue",
    "ControlStatus",
    "DeviceKind",
    "DeviceModel",
    "ElementKind",
    "Inventory",
    "InventoryError",
    "InventoryIssue",
    "InventoryRow",
    "KnowledgeBase",
    "Match",
    "MatchReport",
    "MatchStatus",
    "Mitigation",
    "ModelCatalogue",
    "Product",
    "PumpVersion",
    "Question",
    "Questionnaire",
    "Rating",
    "Risk",
    "RiskRegister",
    "Score",
    "Stride",
    "TherapyRole",
    "Threat",
    "ThreatModel",
    "UnknownModel",
    "VersionError",
    "VersionRange",
    "Vulnerability",
    "Weakness",
    "advisory_json_schema",
    "build_register",
    "load_answers",
    "load_catalogue",
    "load_controls",
    "load_inventory",
    "load_knowledge_base",
    "load_questionnaires",
    "load_threat_model",
    "match_inventory",
    "normalise_text",
    "parse_advisory",
    "parse_answers",
    "parse_inventory_csv",
    "parse_inventory_json",
    "parse_version",
    "register_json",
    "render_html",
    "render_threat_model",
    "write_pdf",
]
