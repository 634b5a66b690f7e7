"""Security monitoring: rules and anomaly detectors over events, alerts, incidents, exporters.

Every component reports ``pumpguard.security_events.SecurityEvent``s; the ``RuleEngine`` (a
sink) and the detectors turn them, and what devices measure, into ``Detection``s; the
``AlertBook`` de-duplicates them into alerts with a life cycle and correlates alerts into
incidents; the exporters hand alerts to a SIEM as syslog, CEF or OCSF, and rules as Sigma.
"""

from pumpguard.monitor.alerts import (
    Alert,
    AlertBook,
    AlertChange,
    AlertError,
    AlertNotFound,
    AlertState,
    AlertTransitionError,
    Incident,
)
from pumpguard.monitor.detections import Detection
from pumpguard.monitor.detectors import BolusAnomaly, CgmPlausibility, Cusum, DetectorError
from pumpguard.monitor.export import (
    ExportError,
    SyslogFacility,
    SyslogTlsSender,
    WebhookSender,
    alert_to_cef,
    alert_to_ocsf_line,
    alert_to_syslog,
    frame_octet_counted,
)
from pumpguard.monitor.live import ActivityWatch, LiveEvent, LiveSettings, PumpActivity
from pumpguard.monitor.ocsf import (
    OCSF_VERSION,
    OcsfClass,
    alert_to_ocsf,
    event_class,
    event_to_ocsf,
)
from pumpguard.monitor.rules import GroupBy, Rule, RuleEngine, RuleError
from pumpguard.monitor.sigma import rule_to_sigma, sigma_filename, write_sigma_rules
from pumpguard.monitor.watch import Monitor

__all__ = [
    "OCSF_VERSION",
    "ActivityWatch",
    "Alert",
    "AlertBook",
    "AlertChange",
    "AlertError",
    "AlertNotFound",
    "AlertState",
    "AlertTransitionError",
    "BolusAnomaly",
    "CgmPlausibility",
    "Cusum",
    "Detection",
    "DetectorError",
    "ExportError",
    "GroupBy",
    "Incident",
    "LiveEvent",
    "LiveSettings",
    "Monitor",
    "OcsfClass",
    "PumpActivity",
    "Rule",
    "RuleEngine",
    "RuleError",
    "SyslogFacility",
    "SyslogTlsSender",
    "WebhookSender",
    "alert_to_cef",
    "alert_to_ocsf",
    "alert_to_ocsf_line",
    "alert_to_syslog",
    "event_class",
    "event_to_ocsf",
    "frame_octet_counted",
    "rule_to_sigma",
    "sigma_filename",
    "write_sigma_rules",
]
