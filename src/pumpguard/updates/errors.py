"""Named failures of the update path.

Client-side refusals (``UpdateError`` and its subclasses) each carry the event code of the check
that refused, so that a pump, a test or the attack catalogue can match on the type or on the
code. Repository-side errors (``RepositoryError`` and its subclasses) are what a pharmacist or
an operator sees when publishing is refused.
"""

from __future__ import annotations

from typing import ClassVar

from pumpguard.updates.events import UpdateEvent

__all__ = [
    "DuplicateSignatureError",
    "EndlessDataError",
    "FreezeError",
    "InvalidTargetError",
    "KeyFileError",
    "LocalFailureError",
    "MalformedMetadataError",
    "MixAndMatchError",
    "NothingPendingError",
    "RepositoryError",
    "RepositoryStateError",
    "RepositoryUnavailableError",
    "RollbackError",
    "SignatureThresholdError",
    "TargetHashMismatchError",
    "TargetRollbackError",
    "ThresholdNotMetError",
    "UnauthorisedSignerError",
    "UnknownTargetError",
    "UpdateError",
    "WrongKeyPassphraseError",
    "error_for",
]


class UpdateError(Exception):
    """An update the pump refused; ``code`` names the check that refused it."""

    code: ClassVar[UpdateEvent]


class SignatureThresholdError(UpdateError):
    code = UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET


class RollbackError(UpdateError):
    code = UpdateEvent.ROLLBACK


class TargetRollbackError(UpdateError):
    code = UpdateEvent.TARGET_ROLLBACK


class FreezeError(UpdateError):
    code = UpdateEvent.FREEZE


class MixAndMatchError(UpdateError):
    code = UpdateEvent.MIX_AND_MATCH


class TargetHashMismatchError(UpdateError):
    code = UpdateEvent.TARGET_HASH_MISMATCH


class UnknownTargetError(UpdateError):
    code = UpdateEvent.UNKNOWN_TARGET


class InvalidTargetError(UpdateError):
    code = UpdateEvent.INVALID_TARGET


class MalformedMetadataError(UpdateError):
    code = UpdateEvent.MALFORMED_METADATA


class EndlessDataError(UpdateError):
    code = UpdateEvent.ENDLESS_DATA


class RepositoryUnavailableError(UpdateError):
    code = UpdateEvent.REPOSITORY_UNAVAILABLE


class LocalFailureError(UpdateError):
    code = UpdateEvent.LOCAL_FAILURE


_BY_CODE: dict[UpdateEvent, type[UpdateError]] = {
    cls.code: cls
    for cls in (
        SignatureThresholdError,
        RollbackError,
        TargetRollbackError,
        FreezeError,
        MixAndMatchError,
        TargetHashMismatchError,
        UnknownTargetError,
        InvalidTargetError,
        MalformedMetadataError,
        EndlessDataError,
        RepositoryUnavailableError,
        LocalFailureError,
    )
}


def error_for(code: UpdateEvent, message: str) -> UpdateError:
    """The refusal class that belongs to ``code``."""
    return _BY_CODE[code](message)


class RepositoryError(Exception):
    """The repository refused an operation; the message says which and why."""


class RepositoryStateError(RepositoryError):
    """The directory is not a repository, is already one, or its files disagree."""


class KeyFileError(RepositoryError):
    """A signing key file is missing, unreadable, unencrypted or of the wrong kind."""


class WrongKeyPassphraseError(KeyFileError):
    """The passphrase does not decrypt the key file."""


class UnauthorisedSignerError(RepositoryError):
    """The key is not one of the keys the role delegates to."""


class DuplicateSignatureError(RepositoryError):
    """The key has already signed this release: one person, one signature."""


class ThresholdNotMetError(RepositoryError):
    """Fewer distinct authorised signatures than the role's threshold."""


class NothingPendingError(RepositoryError):
    """No release is waiting for signatures in this role."""
