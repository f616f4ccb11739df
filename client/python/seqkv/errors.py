"""Typed errors of the seqkv client.

Every failure, whether the server's gRPC status or a check the client makes
before sending, is a `seqkv.Error` carrying the gRPC status code (`.code`, a
`grpc.StatusCode`) and the message. Each code has its own subclass, so callers
catch what they handle (`except seqkv.UnauthenticatedError`) or test `.code`.
Bad arguments found before sending raise `InvalidArgumentError`, which is also
a `ValueError`.
"""

import grpc

__all__ = [
    "Error", "CancelledError", "UnknownError", "InvalidArgumentError",
    "DeadlineExceededError", "NotFoundError", "AlreadyExistsError",
    "PermissionDeniedError", "ResourceExhaustedError",
    "FailedPreconditionError", "AbortedError", "OutOfRangeError",
    "UnimplementedError", "InternalError", "UnavailableError",
    "DataLossError", "UnauthenticatedError",
]


class Error(Exception):
    """A failed seqkv call: `code` is a grpc.StatusCode, `message` its text."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code.name}: {self.message}"


class CancelledError(Error):
    code = grpc.StatusCode.CANCELLED


class UnknownError(Error):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(Error, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(Error):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(Error):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(Error):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(Error):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(Error):
    """A Get whose chunks were deleted or evicted while streaming: retry."""

    code = grpc.StatusCode.ABORTED


class OutOfRangeError(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(Error):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(Error):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(Error):
    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(Error):
    """A stored chunk is damaged, or the server sent a malformed stream."""

    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(Error):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE = {
    cls.code: cls
    for cls in (CancelledError, UnknownError, InvalidArgumentError,
                DeadlineExceededError, NotFoundError, AlreadyExistsError,
                PermissionDeniedError, ResourceExhaustedError,
                FailedPreconditionError, AbortedError, OutOfRangeError,
                UnimplementedError, InternalError, UnavailableError,
                DataLossError, UnauthenticatedError)
}


def error_for(code, message):
    """The Error subclass instance for a grpc.StatusCode."""
    return _BY_CODE.get(code, Error)(message, code)


def from_rpc_error(error):
    """Converts a grpc.RpcError raised by a stub into a seqkv.Error."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code, details or "")
