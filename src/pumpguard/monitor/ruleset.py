"""pumpguard's detection rules: what each one catches, why, and which ATT&CK technique it is.

Codes come from the packages' own ``StrEnum``s, so a renamed code breaks this module at import
time instead of silently never matching. Thresholds follow one principle: a single refusal that
cannot happen by accident (a replayed counter, a forged MAC from a paired address, a signature
below threshold) alerts at once; refusals that radio noise or a user's typo can cause (a bad CRC,
a failed pairing) alert only when they repeat.

Rules over ``monitor.*`` codes match findings of ``monitor.live.ActivityWatch`` on what pumps
report (dosing against the patient's own history, programming hours, telemetry loss); the
statistics are documented there, the rule says when the finding becomes an alert.

Technique ids are from MITRE ATT&CK for ICS as published up to v17; v18 (October 2025) moved some
ICS techniques into sub-techniques (e.g. T0856 Spoof Reporting Message -> T1692.002), which a
later revision of this table should follow.
"""

from __future__ import annotations

from pumpguard.interop.codes import InteropEvent as H
from pumpguard.link.codes import LinkEventCode as L
from pumpguard.monitor.live import LiveEvent as D
from pumpguard.monitor.rules import GroupBy, Rule
from pumpguard.pki.events import PkiEvent as P
from pumpguard.security_events import Component, Severity
from pumpguard.server.errors import ServerEventCode as S
from pumpguard.transport.codes import TransportEvent as T
from pumpguard.updates.events import UpdateEvent as U

__all__ = ["DEFAULT_RULES"]

_MINUTE = 60_000

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        rule_id="PG-LINK-001",
        title="Replayed or reflected frame on the insulin link",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.REPLAY, L.REFLECTION, L.COUNTER_JUMP, L.E2E_COUNTER}),
        rationale=(
            "A frame whose counter was already used, that echoes the pump's own frame, or whose "
            "counter leaps ahead is never produced by a paired device: it is a recorded command "
            "played back (the MiniMed remote replay, CVE-2018-14781) or counter manipulation."
        ),
        technique="T0855",
        references=("CVE-2018-14781", "CVE-2016-5086"),
    ),
    Rule(
        rule_id="PG-LINK-002",
        title="Forged frames on the insulin link",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.BAD_MAC, L.SESSION_BAD_MAC}),
        rationale=(
            "Authentication tags fail when someone without the session key injects or modifies "
            "frames. One failure can be a corrupted frame that passed the CRC; three in ten "
            "minutes from the same sender is an attacker."
        ),
        technique="T0830",
        threshold=3,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.DEVICE,
        references=("CVE-2019-10964",),
    ),
    Rule(
        rule_id="PG-LINK-003",
        title="Command from an unknown or unauthorised sender",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.UNKNOWN_SENDER, L.NO_SESSION, L.ROLE_DENIED}),
        rationale=(
            "Only the paired controller may command the pump and a CGM may only report. A "
            "command from any other address, or a CGM trying to command, is the unauthenticated "
            "command pattern of the Omnipod Eros and Animas OneTouch Ping advisories."
        ),
        technique="T0855",
        references=("CVE-2020-10627", "CVE-2016-5085"),
    ),
    Rule(
        rule_id="PG-LINK-004",
        title="Pairing attempt outside the pairing window or unsolicited",
        severity=Severity.MEDIUM,
        component=Component.LINK,
        codes=frozenset({L.PAIRING_OUTSIDE_WINDOW, L.PAIRING_UNSOLICITED}),
        rationale=(
            "Pairing is only possible while the user holds the pump's pairing window open; a "
            "request at any other time comes from a device the user did not ask for."
        ),
        technique="T0860",
        references=("CVE-2022-32537",),
    ),
    Rule(
        rule_id="PG-LINK-005",
        title="Repeated failed pairings (possible man in the middle)",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.PAIRING_FAILED}),
        rationale=(
            "A pairing fails when a check value does not match or the other side gives up; a "
            "lost frame can do that once. Two failures within ten minutes warrant a look."
        ),
        technique="T0830",
        threshold=2,
        window_ms=10 * _MINUTE,
        references=("CVE-2022-32537",),
    ),
    Rule(
        rule_id="PG-LINK-006",
        title="Malformed frames on the insulin link",
        severity=Severity.MEDIUM,
        component=Component.LINK,
        codes=frozenset({L.FRAME_MALFORMED, L.FRAME_CRC, L.PDU_INVALID, L.E2E_CRC}),
        rationale=(
            "Radio noise corrupts the odd frame; a stream of malformed or oversized frames is "
            "fuzzing of the pump's parser, the SweynTooth pattern."
        ),
        technique="T0866",
        threshold=10,
        window_ms=5 * _MINUTE,
    ),
    Rule(
        rule_id="PG-LINK-007",
        title="Wake-up flood draining the pump battery",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.WAKEUP_BUDGET_EXHAUSTED, L.RATE_LIMITED}),
        rationale=(
            "The pump spends a bounded radio budget on unauthenticated frames; exhausting it or "
            "hitting the command rate limit means something is keeping the radio awake, the "
            "battery-drain pattern of the 2024 app-loop recall."
        ),
        technique="T0814",
    ),
    Rule(
        rule_id="PG-LINK-008",
        title="Insulin link lost",
        severity=Severity.MEDIUM,
        component=Component.LINK,
        codes=frozenset({L.LINK_LOST}),
        rationale=(
            "Cryptography cannot stop jamming; the pump falls back to its scheduled basal and "
            "the loss must reach a human, who can check for a jammer or a dead phone."
        ),
        technique="T0814",
    ),
    Rule(
        rule_id="PG-LINK-009",
        title="Cleartext (legacy) frame sent to a secure device",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.FRAME_WRONG_PROFILE}),
        rationale=(
            "A secure device only decodes frames sent to its own or its sessions' addresses, "
            "and none of its peers speaks the legacy profile: a cleartext frame with a valid "
            "CRC that names it is a legacy attack tool or a downgrade attempt (measured with "
            "`pumpguard lab detect`: a forged bolus or temp basal otherwise leaves one bad MAC, "
            "below PG-LINK-002's threshold)."
        ),
        technique="T0830",
        references=("CVE-2019-10964", "CVE-2020-10627"),
    ),
    Rule(
        rule_id="PG-LINK-010",
        title="Pairing rejected at numeric comparison (possible man in the middle)",
        severity=Severity.HIGH,
        component=Component.LINK,
        codes=frozenset({L.PAIRING_REJECTED}),
        rationale=(
            "The user rejects a pairing when the six-digit numbers on the two screens differ, "
            "which is what a man in the middle who substituted the keys causes; a user "
            "pressing the wrong button is the rarer case, and worth a call either way."
        ),
        technique="T0830",
        references=("CVE-2022-32537",),
    ),
    Rule(
        rule_id="PG-TLS-001",
        title="Device connection refused: certificate not trusted",
        severity=Severity.HIGH,
        component=Component.TRANSPORT,
        codes=frozenset(
            {
                P.TLS_UNKNOWN_CA,
                P.TLS_CERT_REVOKED,
                P.TLS_BAD_CERT,
                P.TLS_WRONG_PURPOSE,
                P.PEER_BAD_IDENTITY,
            }
        ),
        rationale=(
            "A certificate from another CA, a revoked one, or one used for the wrong purpose is "
            "an impersonation attempt or a decommissioned device coming back; the missing "
            "mutual authentication of CVE-2022-26394 and CVE-2020-25165 is what this closes."
        ),
        technique="T0848",
        group_by=GroupBy.PEER,
        references=("CVE-2022-26394", "CVE-2020-25165", "CVE-2017-12721"),
    ),
    Rule(
        rule_id="PG-TLS-002",
        title="Repeated TLS connections without a certificate or with weak settings",
        severity=Severity.MEDIUM,
        component=Component.TRANSPORT,
        codes=frozenset(
            {
                P.TLS_NO_CLIENT_CERT,
                P.TLS_PROTOCOL_TOO_OLD,
                P.TLS_NO_SHARED_CIPHER,
                P.TLS_CERT_EXPIRED,
                P.TLS_CERT_NOT_YET_VALID,
            }
        ),
        rationale=(
            "A misconfigured device fails once and is fixed; scanners and downgrade attempts "
            "repeat. Five from one address in ten minutes is a probe."
        ),
        technique="T0846",
        threshold=5,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.PEER,
    ),
    Rule(
        rule_id="PG-MQTT-001",
        title="Device acting outside its own topics or identity",
        severity=Severity.HIGH,
        component=Component.TRANSPORT,
        codes=frozenset(
            {
                T.IDENTITY_MISMATCH,
                T.ACL_PUBLISH_DENIED,
                T.ACL_SUBSCRIBE_DENIED,
                T.PAYLOAD_SPOOFED,
            }
        ),
        rationale=(
            "A pump may publish only its own telemetry and read only its own commands, under the "
            "identity of its certificate. Anything else is a compromised or cloned device "
            "reaching for another pump's data or commands."
        ),
        technique="T0848",
    ),
    Rule(
        rule_id="PG-MQTT-002",
        title="Malformed MQTT traffic from a device",
        severity=Severity.MEDIUM,
        component=Component.TRANSPORT,
        codes=frozenset({T.MALFORMED_PACKET, T.PROTOCOL_VIOLATION, T.PAYLOAD_INVALID}),
        rationale=(
            "Firmware bugs produce the odd bad packet; repeated malformed packets are a parser "
            "being probed."
        ),
        technique="T0866",
        threshold=3,
        window_ms=10 * _MINUTE,
    ),
    Rule(
        rule_id="PG-MQTT-003",
        title="Connections with one device's identity keep replacing each other",
        severity=Severity.MEDIUM,
        component=Component.TRANSPORT,
        codes=frozenset({T.SESSION_TAKEN_OVER}),
        rationale=(
            "A pump that reconnects before its old connection timed out replaces it once; two "
            "devices holding one certificate replace each other again and again, which means "
            "the key was copied (the broker keeps the newer, so the real pump may be cut off)."
        ),
        technique="T0848",
        threshold=3,
        window_ms=10 * _MINUTE,
    ),
    Rule(
        rule_id="PG-HL7-001",
        title="Infusion order from an unauthenticated or wrong kind of peer",
        severity=Severity.HIGH,
        component=Component.INTEROP,
        codes=frozenset({H.UNAUTHENTICATED, H.WRONG_PEER_KIND, H.CLEARTEXT}),
        rationale=(
            "Only the EHR, authenticated by its certificate, may send infusion orders; an order "
            "from anyone else, or over cleartext MLLP, is the forged-order path into a patient."
        ),
        technique="T0855",
    ),
    Rule(
        rule_id="PG-HL7-002",
        title="Replayed, stale or wrong-patient infusion order",
        severity=Severity.HIGH,
        component=Component.INTEROP,
        codes=frozenset({H.REPLAYED, H.STALE, H.PATIENT_MISMATCH}),
        rationale=(
            "An order whose control id or placer number was already used, that is older than "
            "orders can be, or that names another patient than the pump's is a replay or a "
            "misdirected order; each could program the wrong dose into the wrong patient."
        ),
        technique="T0855",
    ),
    Rule(
        rule_id="PG-HL7-003",
        title="Infusion order beyond a hard limit",
        severity=Severity.MEDIUM,
        component=Component.INTEROP,
        codes=frozenset({H.HARD_LIMIT}),
        rationale=(
            "Orders above a hard limit are refused by the library check. One is a prescribing "
            "error worth a pharmacist's look; the rule makes sure someone sees it."
        ),
        technique="T0836",
    ),
    Rule(
        rule_id="PG-HL7-004",
        title="Malformed or abusive HL7 traffic",
        severity=Severity.MEDIUM,
        component=Component.INTEROP,
        codes=frozenset(
            {
                H.MALFORMED,
                H.OVERSIZED_FRAME,
                H.READ_TIMEOUT,
                H.TOO_MANY_CONNECTIONS,
                H.GARBAGE,
            }
        ),
        rationale=(
            "Interface engines send the odd malformed message; repeated malformed, oversized or "
            "trickled frames are the parser and the listener being attacked."
        ),
        technique="T0866",
        threshold=5,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.PEER,
    ),
    Rule(
        rule_id="PG-PKI-001",
        title="Wrong passphrase for the CA key",
        severity=Severity.HIGH,
        component=Component.PKI,
        codes=frozenset({P.CA_WRONG_PASSPHRASE}),
        rationale="Whoever holds the CA key can mint any device; guessing at it is an attack.",
        technique="T0859",
    ),
    Rule(
        rule_id="PG-PKI-002",
        title="Certificate revocation list missing or expired",
        severity=Severity.HIGH,
        component=Component.PKI,
        codes=frozenset({P.TLS_CRL_UNAVAILABLE}),
        rationale=(
            "With CRL checking on, an expired CRL makes every TLS endpoint refuse every device: "
            "the fleet goes offline (pumps keep infusing, but nothing is reported). Not an "
            "attack in itself, but a stopped CRL publisher, or one stopped on purpose."
        ),
        technique="T0814",
    ),
    Rule(
        rule_id="PG-UPD-001",
        title="Update refused: signatures, rollback or tampering",
        severity=Severity.CRITICAL,
        component=Component.UPDATES,
        codes=frozenset(
            {
                U.SIGNATURE_THRESHOLD_NOT_MET,
                U.ROLLBACK,
                U.TARGET_ROLLBACK,
                U.MIX_AND_MATCH,
                U.TARGET_HASH_MISMATCH,
                U.UNKNOWN_TARGET,
                U.INVALID_TARGET,
                U.MALFORMED_METADATA,
                U.ENDLESS_DATA,
            }
        ),
        rationale=(
            "A pump refused a drug library or firmware that verification says is forged, "
            "altered, older than installed or inconsistent: the unsigned-library and "
            "unsigned-firmware advisories (Hospira, B. Braun, BD Alaris) in action."
        ),
        technique="T0857",
        references=("CVE-2014-5406", "CVE-2021-33885", "CVE-2023-30562", "CVE-2019-10959"),
    ),
    Rule(
        rule_id="PG-UPD-002",
        title="Stale update metadata (freeze)",
        severity=Severity.HIGH,
        component=Component.UPDATES,
        codes=frozenset({U.FREEZE}),
        rationale=(
            "Expired timestamp metadata means the pump is being kept from newer libraries, by an "
            "attacker replaying old metadata or a server that stopped refreshing it."
        ),
        technique="T0857",
    ),
    Rule(
        rule_id="PG-UPD-003",
        title="Publication refused at the update repository",
        severity=Severity.HIGH,
        component=Component.UPDATES,
        codes=frozenset({U.SIGNATURE_REFUSED, U.PUBLISH_REFUSED}),
        rationale=(
            "Someone tried to sign with a key not delegated to the role, to sign twice with one "
            "key, or to publish below threshold: the two-person rule at work, or a stolen key."
        ),
        technique="T0857",
    ),
    Rule(
        rule_id="PG-DOSE-001",
        title="PCA doses unlike the patient's own history",
        severity=Severity.HIGH,
        component=Component.DEVICE,
        codes=frozenset({D.BOLUS_OUTLIER, D.BOLUS_BURST}),
        rationale=(
            "The monitor compares every PCA dose a pump reports with the same patient's doses "
            "of the last 14 days (robust z-score on median and MAD, and the most doses ever "
            "given in two hours). A dose far above habit, or a run of doses no earlier day "
            "saw, is a tampered programme or someone else pressing the button."
        ),
        technique="T0855",
    ),
    Rule(
        rule_id="PG-DOSE-002",
        title="Burst of soft-limit overrides on one pump",
        severity=Severity.MEDIUM,
        component=Component.DEVICE,
        codes=frozenset({D.OVERRIDE_BURST}),
        rationale=(
            "Overriding a soft limit is legitimate and logged with a reason; more overrides in "
            "an hour than this pump has ever had in an hour (and at least three) is a limit "
            "being walked past repeatedly, by a confused user or by someone pushing a dose "
            "through the drug library's guard."
        ),
        technique="T0836",
    ),
    Rule(
        rule_id="PG-DOSE-003",
        title="Pump programmed at an unusual hour",
        severity=Severity.MEDIUM,
        component=Component.DEVICE,
        codes=frozenset({D.OFF_HOURS_PROGRAMMING}),
        rationale=(
            "Each pump learns the hours of the day at which it is programmed (14 days, at "
            "least 20 programmings over 3 days); a programme entered at an hour it has never "
            "seen, nor the hours either side, is outside the ward's routine: an outpatient "
            "unit at night, or a remote path used when nobody watches."
        ),
        technique="T0836",
    ),
    Rule(
        rule_id="PG-NET-001",
        title="Repeated telemetry loss from one pump (interference or jamming)",
        severity=Severity.MEDIUM,
        component=Component.DEVICE,
        codes=frozenset({D.LOSS_BURST}),
        rationale=(
            "A pump reports its status every few seconds; one gap is a dead zone or a pump "
            "carried between access points, three within 30 minutes is interference or a "
            "jammer. Pumps keep infusing their last programme, but nobody sees their alarms "
            "remotely."
        ),
        technique="T0814",
    ),
    Rule(
        rule_id="PG-SRV-001",
        title="Data from a device that is not in the inventory or not admitted",
        severity=Severity.HIGH,
        component=Component.SERVER,
        codes=frozenset({S.INGEST_UNKNOWN_DEVICE, S.INGEST_DEVICE_NOT_ADMITTED}),
        rationale=(
            "Only registered pumps in service may report; records from an unknown identity or "
            "a decommissioned pump are a rogue or cloned device feeding the server false "
            "reports, or a pump that escaped decommissioning."
        ),
        technique="T0856",
    ),
    Rule(
        rule_id="PG-SRV-002",
        title="Resent pump records with different content",
        severity=Severity.HIGH,
        component=Component.SERVER,
        codes=frozenset({S.INGEST_SEQUENCE_CONFLICT}),
        rationale=(
            "A pump resends a record only as it first sent it; a sequence number reused with "
            "other content is a second device with the same identity or an altered history."
        ),
        technique="T0856",
    ),
    Rule(
        rule_id="PG-SRV-003",
        title="Malformed records from a pump",
        severity=Severity.MEDIUM,
        component=Component.SERVER,
        codes=frozenset({S.INGEST_MALFORMED}),
        rationale=(
            "The broker already checked the message schema, so a record the server still "
            "refuses is rare; five from one pump in ten minutes is firmware probing the "
            "server's parser or a broken pump that needs a look."
        ),
        technique="T0866",
        threshold=5,
        window_ms=10 * _MINUTE,
    ),
    Rule(
        rule_id="PG-AUTH-001",
        title="Repeated failed logins to the pump server",
        severity=Severity.MEDIUM,
        component=Component.SERVER,
        codes=frozenset({S.LOGIN_FAILED, S.LOGIN_WHILE_LOCKED}),
        rationale=(
            "People mistype; five refused logins from one address within ten minutes is "
            "password guessing (the lockout slows it, this makes it seen)."
        ),
        technique="T0859",
        threshold=5,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.PEER,
    ),
    Rule(
        rule_id="PG-AUTH-002",
        title="One-time code replayed or account locked",
        severity=Severity.HIGH,
        component=Component.SERVER,
        codes=frozenset({S.TOTP_REPLAY, S.ACCOUNT_LOCKED}),
        rationale=(
            "A TOTP code is accepted once; seeing it again means it was observed and replayed. "
            "A lockout means the guessing above went on long enough to trip it."
        ),
        technique="T0859",
        group_by=GroupBy.ANY,
    ),
    Rule(
        rule_id="PG-AUTH-003",
        title="A session probing endpoints its role does not allow",
        severity=Severity.MEDIUM,
        component=Component.SERVER,
        codes=frozenset({S.FORBIDDEN}),
        rationale=(
            "Least privilege makes one refused request an honest mistake; five within ten "
            "minutes from one address is a stolen low-privilege session exploring the API."
        ),
        technique="T0859",
        threshold=5,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.PEER,
    ),
    Rule(
        rule_id="PG-LIB-001",
        title="Drug library approval by its own author (two-person rule)",
        severity=Severity.HIGH,
        component=Component.SERVER,
        codes=frozenset({S.LIBRARY_SELF_APPROVAL}),
        rationale=(
            "A library version is approved only by a pharmacy approver who did not draft, edit "
            "or submit it. An author trying to approve it has, or was given, an approver account "
            "and is trying to push dosing limits past the second pair of eyes: the insider path "
            "around the control that keeps a tampered library off the pumps."
        ),
        technique="T0836",
        group_by=GroupBy.ANY,
        references=("CVE-2023-30562",),
    ),
    Rule(
        rule_id="PG-LIB-002",
        title="Approval of a drug library older than the approved one (rollback)",
        severity=Severity.MEDIUM,
        component=Component.SERVER,
        codes=frozenset({S.LIBRARY_STALE_APPROVAL}),
        rationale=(
            "Approving a version numbered below the newest approved one would send pumps back "
            "to older limits; pumps refuse it anyway, so it is either a stale draft approved by "
            "mistake or an attempt to restore limits that were deliberately tightened."
        ),
        technique="T0836",
        group_by=GroupBy.ANY,
    ),
    Rule(
        rule_id="PG-LIB-003",
        title="Repeated attempts to change frozen drug library versions",
        severity=Severity.MEDIUM,
        component=Component.SERVER,
        codes=frozenset({S.LIBRARY_NOT_EDITABLE}),
        rationale=(
            "Approved and rejected versions never change and submitted ones wait for a "
            "decision; the tools do not offer such edits, so one is a stale screen, three in "
            "ten minutes is someone working the API to alter a library after its review."
        ),
        technique="T0836",
        threshold=3,
        window_ms=10 * _MINUTE,
        group_by=GroupBy.ANY,
    ),
)
