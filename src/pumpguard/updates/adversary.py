"""What an attacker who controls the update server can publish, for tests and the attack catalogue.

The strongest realistic attacker on the update path has taken over the server process: it can
rewrite every served file and holds the online snapshot and timestamp keys, and perhaps some
offline keys it stole (one pharmacist's key, say). ``forge_release`` publishes a target the way
such an attacker would, on a ``MemorySource`` mirror, signing the delegated role with only the
keys it holds. The secure client must refuse whatever this produces unless the stolen keys meet
the role's threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from pumpguard.updates.fetchers import MemorySource
from pumpguard.updates.targets import UpdateKind, target_path

__all__ = ["forge_release"]


def _read(mirror: MemorySource, path: str) -> Metadata[Any]:
    data = mirror.read(f"metadata/{path}")
    if data is None:
        raise ValueError(f"the mirror has no metadata/{path}")
    md: Metadata[Any] = Metadata.from_bytes(data)
    return md


def _sign(md: Metadata[Any], signers: Sequence[Signer]) -> bytes:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def forge_release(
    mirror: MemorySource,
    kind: UpdateKind,
    name: str,
    version: int,
    data: bytes,
    *,
    role_signers: Sequence[Signer],
    online_signers: Sequence[Signer],
    now: datetime,
    expiry: timedelta = timedelta(days=1),
) -> str:
    """Add ``data`` as a new target of ``kind`` on ``mirror``; return its target path.

    The delegated role's new version is signed by ``role_signers`` only (none: unsigned); the
    snapshot and timestamp are re-signed with ``online_signers`` so that they point at it.
    """
    timestamp = _read(mirror, "timestamp.json")
    if not isinstance(timestamp.signed, Timestamp):
        raise ValueError("metadata/timestamp.json is not timestamp metadata")
    snapshot = _read(mirror, f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
    if not isinstance(snapshot.signed, Snapshot):
        raise ValueError("the current snapshot is not snapshot metadata")
    role_file = f"{kind.role}.json"
    role = _read(mirror, f"{snapshot.signed.meta[role_file].version}.{role_file}")
    if not isinstance(role.signed, Targets):
        raise ValueError(f"{role_file} is not targets metadata")

    path = target_path(kind, name, version)
    info = TargetFile.from_data(path, data, ["sha256"])
    info.unrecognized_fields["custom"] = {"kind": kind.value, "name": name, "version": version}
    role.signed.targets[path] = info
    role.signed.version += 1
    role.signed.expires = now + expiry
    mirror.put(f"metadata/{role.signed.version}.{role_file}", _sign(role, role_signers))
    directory, _, basename = path.rpartition("/")
    mirror.put(f"targets/{directory}/{info.hashes['sha256']}.{basename}", data)

    snapshot.signed.meta[role_file] = MetaFile(role.signed.version)
    snapshot.signed.version += 1
    snapshot.signed.expires = now + expiry
    mirror.put(f"metadata/{snapshot.signed.version}.snapshot.json", _sign(snapshot, online_signers))

    timestamp.signed.snapshot_meta = MetaFile(snapshot.signed.version)
    timestamp.signed.version += 1
    timestamp.signed.expires = now + expiry
    mirror.put("metadata/timestamp.json", _sign(timestamp, online_signers))
    return path
