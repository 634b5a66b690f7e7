"""What went wrong with a message, where, and what the protocol answers for it."""

from __future__ import annotations

from dataclasses import dataclass

from pumpguard.interop.codes import AckCode, AppError, Hl7ErrorCode

__all__ = ["ErrorLocation", "Hl7BuildError", "Hl7Error"]


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """HL7 ERL (ERR-2): segment id, its occurrence (1-based), field, repetition, component."""

    segment: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None

    def to_er7(self, component_sep: str = "^") -> str:
        parts = [self.segment, str(self.sequence)]
        for value in (self.field, self.repetition, self.component):
            parts.append("" if value is None else str(value))
        return component_sep.join(parts).rstrip(component_sep)

    def __str__(self) -> str:
        where = self.segment if self.sequence == 1 else f"{self.segment}[{self.sequence}]"
        if self.field is not None:
            where += f"-{self.field}"
        if self.component is not None:
            where += f".{self.component}"
        return where


class Hl7Error(ValueError):
    """A message that cannot be taken as it is, with everything needed to answer it.

    ``reject`` decides between the two answers HL7 v2.6 (2.9.2) allows: a reject (CR, or AR in
    original mode) when the message cannot be processed at all (unsupported type, version,
    profile, undecodable header), an error (CE, or AE) when it was understood but its content
    is wrong. ``control_id`` is MSH-10 when it could be recovered, so that MSA-2 can echo it.
    """

    def __init__(
        self,
        message: str,
        code: Hl7ErrorCode,
        *,
        location: ErrorLocation | None = None,
        reject: bool = False,
        app_error: AppError | None = None,
        control_id: str | None = None,
    ) -> None:
        where = f" at {location}" if location is not None else ""
        super().__init__(f"{message}{where} (HL7 error {int(code)}: {code.text})")
        self.reason = message
        self.code = code
        self.location = location
        self.reject = reject
        self.app_error = app_error
        self.control_id = control_id

    @property
    def commit_code(self) -> AckCode:
        return AckCode.CR if self.reject else AckCode.CE

    @property
    def original_code(self) -> AckCode:
        return AckCode.AR if self.reject else AckCode.AE

    def with_control_id(self, control_id: str | None) -> Hl7Error:
        if control_id is None or self.control_id is not None:
            return self
        return Hl7Error(
            self.reason,
            self.code,
            location=self.location,
            reject=self.reject,
            app_error=self.app_error,
            control_id=control_id,
        )


class Hl7BuildError(ValueError):
    """A message this package was asked to build does not validate against HL7 v2.6: a bug or
    a value that cannot be represented, never something to put on the wire."""
