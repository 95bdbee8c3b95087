"""Server error codes and the shape of an error reply."""

from __future__ import annotations

from typing import Any

from .bson_codec import Document

CODE_NAMES = {
    1: "InternalError",
    2: "BadValue",
    4: "NoSuchKey",
    9: "FailedToParse",
    11: "UserNotFound",
    13: "Unauthorized",
    14: "TypeMismatch",
    17: "ProtocolError",
    18: "AuthenticationFailed",
    20: "IllegalOperation",
    23: "AlreadyInitialized",
    26: "NamespaceNotFound",
    31: "RoleNotFound",
    40: "ConflictingUpdateOperators",
    43: "CursorNotFound",
    48: "NamespaceExists",
    50: "MaxTimeMSExpired",
    59: "CommandNotFound",
    64: "WriteConcernFailed",
    66: "ImmutableField",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    74: "NodeNotFound",
    76: "NoReplicationEnabled",
    79: "UnknownReplWriteConcern",
    91: "ShutdownInProgress",
    93: "InvalidReplicaSetConfig",
    94: "NotYetInitialized",
    95: "NotSecondary",
    100: "UnsatisfiableWriteConcern",
    103: "NewReplicaSetConfigurationIncompatible",
    109: "ConfigurationInProgress",
    115: "CommandNotSupported",
    186: "ClientMetadataCannotBeMutated",
    189: "PrimarySteppedDown",
    262: "ExceededTimeLimit",
    263: "OperationNotSupportedInTransaction",
    308: "CurrentConfigNotCommittedYet",
    334: "MechanismUnavailable",
    352: "UnsupportedOpQueryCommand",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    11602: "InterruptedDueToReplStateChange",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
    51003: "Location51003",
}

# Errors after which the driver should rediscover the primary: replies carry topologyVersion.
NOT_PRIMARY_OR_SHUTDOWN = {91, 189, 10107, 11600, 11602, 13435, 13436}

# A retryable write whose writeConcernError has one of these codes gets the RetryableWriteError
# label (mongod's isRetryableWriteError: NotPrimaryError, ShutdownError, network errors and
# ExceededTimeLimit; WriteConcernFailed (64) is not one of them).
RETRYABLE_WRITE_CODES = NOT_PRIMARY_OR_SHUTDOWN | {6, 7, 89, 91, 262, 9001}


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, f"Location{code}")


class MongoError(Exception):
    """A command failure rendered as {ok: 0, errmsg, code, codeName, ...extra}."""

    def __init__(self, code: int, errmsg: str, **extra: Any) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def reply(self) -> Document:
        out: Document = {"ok": 0.0, "errmsg": self.errmsg, "code": self.code}
        out["codeName"] = code_name(self.code)
        out.update(self.extra)
        return out


def unauthorized(message: str) -> MongoError:
    return MongoError(13, message)
