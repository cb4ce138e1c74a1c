"""The words of a refusal: the protocol version, the stable error codes and the exception
that carries one back to the sender. Standard library only."""

from __future__ import annotations

from typing import Any

from .params import WireEnum

VERSION = 1


class ErrorCode(WireEnum):
    """Stable, machine-readable error codes carried by ``error`` events."""

    BAD_MESSAGE = "bad_message"      # not multipart JSON, header not an object, not UTF-8
    BAD_VERSION = "bad_version"      # unknown major protocol version
    UNKNOWN_OP = "unknown_op"
    BAD_FIELD = "bad_field"          # a header field or parameter is missing or invalid
    BAD_FRAME = "bad_frame"          # frame count, size or format disagrees with the header
    TOO_LARGE = "too_large"          # an image, prompt or message exceeds a documented limit
    UNKNOWN_MODEL = "unknown_model"
    MODEL_ERROR = "model_error"      # the model exists but cannot be loaded
    BUSY = "busy"                    # the queue is full; retry later
    DUPLICATE_JOB = "duplicate_job"  # this client already has an active job with this id
    NOT_FOUND = "not_found"          # cancel/status of a job that is not known
    OUT_OF_MEMORY = "out_of_memory"
    UNAUTHORIZED = "unauthorized"    # the client's key was revoked while it was connected
    INTERNAL = "internal"
    # raised by the client only
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    DISCONNECTED = "disconnected"    # the connection dropped while the job was in flight


class ProtocolError(Exception):
    """A request or event that breaks the protocol; carries the code to send back."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_event(self, job: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"v": VERSION, "event": "error", "code": self.code,
                                 "message": self.message}
        if job is not None:
            event["job"] = job
        if self.field is not None:
            event["field"] = self.field
        return event
