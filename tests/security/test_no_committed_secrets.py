"""No private key, token or credential is committed to the repository.

pumpguard generates every key it uses (CA, server, devices, TUF roles, audit) at run time into a
data directory; a key in the repository would be a key every installation shares. The scan
covers the files git tracks (what a clone gets) and is itself tested on planted secrets, so a
pattern that stopped matching would be noticed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ROOT = Path(__file__).resolve().parents[2]

_PATTERNS: dict[str, re.Pattern[str]] = {
    "PEM private key": re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=\r\n:,-]{40,}"
    ),
    "PuTTY private key": re.compile(r"PuTTY-User-Key-File-\d+:"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "credential in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^/\s@\"'{}<>$]{3,}@"),
    "TOTP enrolment URI with its secret": re.compile(
        r"otpauth://totp/[^\s\"']*secret=[A-Z2-7]{16,}"
    ),
}
_FORBIDDEN_NAMES = re.compile(
    r"(^|/)(\.env|id_rsa|id_ed25519|passphrase|[^/]*\.(key|p12|pfx|jks)|security-events\.jsonl"
    r"|[^/]*\.db|[^/]*\.sqlite3?)$"
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the scan covers what git tracks")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def scan(paths: list[Path], root: Path) -> list[Finding]:
    findings = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if _FORBIDDEN_NAMES.search(relative):
            findings.append(Finding(relative, 0, "file that holds secrets or run-time data"))
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for kind, pattern in _PATTERNS.items():
            for match in pattern.finditer(text):
                findings.append(Finding(relative, text.count("\n", 0, match.start()) + 1, kind))
    return findings


def test_no_secret_is_committed() -> None:
    findings = scan(_tracked_files(), ROOT)
    assert findings == [], "\n".join(f"{f.path}:{f.line}: {f.kind}" for f in findings)


def test_the_scan_finds_planted_secrets(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    )
    ed_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    planted = {
        "config/server.pem": ec_key.decode(),
        "notes/deploy.md": "ssh key:\n" + ed_key.decode(),
        "settings.py": 'DATABASE = "postgresql://pumpguard:hunter22' + '@db.example/pumps"\n',
        "ci.yml": "token: ghp_" + "a1B2" * 9 + "\n",
        "aws.txt": "AKIA" + "ABCDEFGHIJ234567" + "\n",
        "enrol.txt": "otpauth://totp/pumpguard:ana?secret=" + "JBSWY3DPEHPK3PXP" + "&issuer=x\n",
        "data/passphrase": "x\n",
        "data/pumpguard.db": "",
    }
    for name, content in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    clean = tmp_path / "clean.py"
    clean.write_text(
        'assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")\n'
        'URL = "postgresql://postgres@127.0.0.1:5432/test"\n'
    )
    found = scan([*(tmp_path / n for n in planted), clean], tmp_path)
    assert {f.path for f in found} == set(planted)
    assert not [f for f in found if f.path == "clean.py"]
