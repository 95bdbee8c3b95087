"""mongod's command line, its YAML configuration file, startup validation and JSON logging.

Option errors behave like mongod: a message on stderr, "try '<argv0> --help' for more information",
exit code 2. Options that parse but that mongod's global initialization rejects (the TLS checks)
give its fatal "Error during global initialization" line and exit code 1. Checks that need the log
(keyFile, TLS certificates, dbPath, lock, listen) log and exit from server.py.
"""

from __future__ import annotations

import datetime
import json
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml

from .bson_codec import UTC, to_extended_json

VERSION = "7.0.14"
VERSION_ARRAY = [7, 0, 14, 0]
MAX_WIRE_VERSION = 21
GIT_VERSION = "ce59cfc6a3c5e5c067dca0d30697edd68d4f5188"

EXIT_CLEAN = 0
EXIT_FAILURE = 1
EXIT_BADOPTIONS = 2
EXIT_NET_ERROR = 48
EXIT_NEED_UPGRADE_OR_DBPATH = 100

_BOOL = "bool"
_INT = "int"
_NUMBER = "number"
_STR = "str"
_ANY = "any"

# Every option of mongod.conf the double knows, as dotted path -> type or tuple of allowed values.
SCHEMA: dict[str, Any] = {
    "systemLog.destination": ("file", "syslog"),
    "systemLog.path": _STR,
    "systemLog.logAppend": _BOOL,
    "systemLog.logRotate": ("rename", "reopen"),
    "systemLog.verbosity": _INT,
    "systemLog.quiet": _BOOL,
    "systemLog.traceAllExceptions": _BOOL,
    "systemLog.timeStampFormat": ("iso8601-utc", "iso8601-local"),
    "systemLog.component": _ANY,
    "storage.dbPath": _STR,
    "storage.journal.commitIntervalMs": _INT,
    "storage.directoryPerDB": _BOOL,
    "storage.syncPeriodSecs": _NUMBER,
    "storage.engine": ("wiredTiger", "inMemory"),
    "storage.oplogMinRetentionHours": _NUMBER,
    "storage.wiredTiger.engineConfig.cacheSizeGB": _NUMBER,
    "storage.wiredTiger.engineConfig.journalCompressor": ("none", "snappy", "zlib", "zstd"),
    "storage.wiredTiger.engineConfig.directoryForIndexes": _BOOL,
    "storage.wiredTiger.collectionConfig.blockCompressor": ("none", "snappy", "zlib", "zstd"),
    "storage.wiredTiger.indexConfig.prefixCompression": _BOOL,
    "processManagement.fork": _BOOL,
    "processManagement.pidFilePath": _STR,
    "processManagement.timeZoneInfo": _STR,
    "net.port": _INT,
    "net.bindIp": _STR,
    "net.bindIpAll": _BOOL,
    "net.ipv6": _BOOL,
    "net.maxIncomingConnections": _INT,
    "net.unixDomainSocket.enabled": _BOOL,
    "net.unixDomainSocket.pathPrefix": _STR,
    "net.unixDomainSocket.filePermissions": _INT,
    "net.compression.compressors": _STR,
    "net.tls.mode": ("disabled", "allowTLS", "preferTLS", "requireTLS"),
    "net.tls.certificateKeyFile": _STR,
    "net.tls.certificateKeyFilePassword": _STR,
    "net.tls.CAFile": _STR,
    "net.tls.clusterFile": _STR,
    "net.tls.clusterPassword": _STR,
    "net.tls.CRLFile": _STR,
    "net.tls.allowConnectionsWithoutCertificates": _BOOL,
    "net.tls.allowInvalidCertificates": _BOOL,
    "net.tls.allowInvalidHostnames": _BOOL,
    "net.tls.disabledProtocols": _STR,
    "net.tls.FIPSMode": _BOOL,
    "security.keyFile": _STR,
    "security.clusterAuthMode": ("keyFile", "sendKeyFile", "sendX509", "x509"),
    "security.authorization": ("enabled", "disabled"),
    "security.transitionToAuth": _BOOL,
    "security.javascriptEnabled": _BOOL,
    "operationProfiling.mode": ("off", "slowOp", "all"),
    "operationProfiling.slowOpThresholdMs": _INT,
    "operationProfiling.slowOpSampleRate": _NUMBER,
    "replication.oplogSizeMB": _INT,
    "replication.replSetName": _STR,
    "replication.enableMajorityReadConcern": _BOOL,
    "sharding.clusterRole": ("configsvr", "shardsvr"),
    "setParameter": _ANY,
}

# Options removed from mongod: (dotted path or prefix ending in ".", version that removed it).
REMOVED_OPTIONS: list[tuple[str, tuple[int, int]]] = [
    ("storage.journal.enabled", (6, 1)),
    ("net.http.", (5, 1)),
    ("storage.mmapv1.", (4, 2)),
    ("storage.indexBuildRetry", (6, 0)),
]

EMULATED = (VERSION_ARRAY[0], VERSION_ARRAY[1])

SET_PARAMETER_DEFAULTS: dict[str, Any] = {
    "enableLocalhostAuthBypass": True,
    "authenticationMechanisms": "SCRAM-SHA-1,SCRAM-SHA-256",
    "scramIterationCount": 10000,
    "scramSHA256IterationCount": 15000,
    "featureCompatibilityVersion": "7.0",
    # How long a secondary waits before applying fetched oplog entries (replication lag).
    "replicationApplyDelayMillis": 50,
    # mongod's: a primary with no write for this long writes a no-op to the oplog (1 to 10).
    "periodicNoopIntervalSecs": 10,
    # Delay before a single-node replica set elects itself after replSetInitiate.
    "singleNodeElectionDelayMillis": 500,
    # mongod's: how long a signalled primary waits for a secondary to catch up before exiting.
    "shutdownTimeoutMillisForSignaledShutdown": 15000,
    # Accepted for mongod's sake (the restore drill's scratch instance turns it off); the double has
    # no TTL monitor.
    "ttlMonitorEnabled": True,
    # mongod's (startup only): verify TLS peers with the system's CA store, not net.tls.CAFile.
    "tlsUseSystemCA": False,
}

# TLS protocol names of net.tls.disabledProtocols, with the backwards-compatible noTLS* aliases.
TLS_PROTOCOLS = ("TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3")
# Options whose value mongod replaces with "<password>" in its log and in getCmdLineOpts.
PASSWORD_OPTIONS = {
    "net.tls.certificateKeyFilePassword": "--tlsCertificateKeyFilePassword",
    "net.tls.clusterPassword": "--tlsClusterPassword",
}


class OptionError(Exception):
    """Bad command line or configuration: mongod prints it and exits 2."""


class InitializationError(Exception):
    """An option that parses but that mongod's startup (its global initialization) rejects, with
    the error's code and code name: mongod logs "Error during global initialization" and exits 1."""

    def __init__(self, code: int, code_name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.code_name = code_name

    def error(self) -> dict[str, Any]:
        return {"code": self.code, "codeName": self.code_name, "errmsg": str(self)}


def fail_options(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    program = Path(sys.argv[0]).name
    if program.startswith("__main__"):
        program = "mongod"
    print(f"try '{program} --help' for more information", file=sys.stderr)
    raise SystemExit(EXIT_BADOPTIONS)


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in SCHEMA and SCHEMA[path] == _ANY:
            out[path] = value
        elif isinstance(value, dict):
            _flatten(path + ".", value, out)
        else:
            out[path] = value


def _removed(path: str) -> bool:
    for name, since in REMOVED_OPTIONS:
        matches = path.startswith(name) if name.endswith(".") else path == name
        if matches and since <= EMULATED:
            return True
    return False


def _check_type(path: str, value: Any) -> Any:
    kind = SCHEMA[path]
    if isinstance(kind, tuple):
        if value not in kind:
            raise OptionError(
                f"Bad value for parameter \"{path}\": '{value}' is not one of {', '.join(kind)}"
            )
        return value
    if kind == _BOOL and not isinstance(value, bool):
        raise OptionError(f'Error parsing option "{path}" as bool: {value!r}')
    if kind == _INT and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f'Error parsing option "{path}" as int: {value!r}')
    if kind == _NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise OptionError(f'Error parsing option "{path}" as double: {value!r}')
    if kind == _STR and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise OptionError(f'Error parsing option "{path}" as string: {value!r}')
    return str(value) if kind == _STR else value


def parse_config_text(text: str) -> dict[str, Any]:
    """Parse mongod.conf text into {dotted.path: value}; raise OptionError like mongod would."""
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OptionError(f"Error parsing YAML config file: {exc}") from exc
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise OptionError("Error parsing YAML config file: the root is not a mapping")
    flat: dict[str, Any] = {}
    _flatten("", tree, flat)
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if path not in SCHEMA or _removed(path):
            raise OptionError(f"Unrecognized option: {path}")
        out[path] = _check_type(path, value)
    if out.get("net.bindIp") is not None and out.get("net.bindIpAll"):
        raise OptionError("BadValue: net.bindIp and net.bindIpAll are mutually exclusive")
    return out


@dataclass
class TlsOptions:
    """net.tls.*, as mongod stores them (paths made absolute, TLS 1.0 disabled by default)."""

    mode: str = "disabled"
    certificate_key_file: str | None = None
    certificate_key_file_password: str | None = None
    cluster_file: str | None = None
    cluster_password: str | None = None
    ca_file: str | None = None
    crl_file: str | None = None
    allow_connections_without_certificates: bool = False
    allow_invalid_certificates: bool = False
    allow_invalid_hostnames: bool = False
    use_system_ca: bool = False
    disabled_protocols: list[str] = field(default_factory=lambda: ["TLS1_0"])
    # True when disabledProtocols was not set: mongod then logs that it disabled TLS 1.0 itself.
    implicit_tls10_disabled: bool = True

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @property
    def egress(self) -> bool:
        """Whether the member's own connections to its peers use TLS (preferTLS, requireTLS)."""
        return self.mode in ("preferTLS", "requireTLS")


@dataclass
class Settings:
    argv: list[str]
    parsed: dict[str, Any]
    port: int = 27017
    bind_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    db_path: str = "/data/db"
    log_path: str | None = None
    log_append: bool = False
    log_rotate: str = "rename"
    repl_set: str | None = None
    key_file: str | None = None
    authorization: bool = False
    fork: bool = False
    pid_file: str | None = None
    unix_socket: bool = True
    unix_socket_prefix: str = "/tmp"
    unix_socket_mode: int = 0o700
    tls: TlsOptions = field(default_factory=lambda: TlsOptions())
    parameters: dict[str, Any] = field(default_factory=lambda: dict(SET_PARAMETER_DEFAULTS))

    def parameter(self, name: str) -> Any:
        return self.parameters[name]


class _Parser:
    """mongod-style argv parsing: --opt value, --opt=value, repeatable --setParameter."""

    VALUE_OPTIONS: ClassVar[dict[str, str]] = {
        "--config": "config",
        "-f": "config",
        "--port": "net.port",
        "--bind_ip": "net.bindIp",
        "--dbpath": "storage.dbPath",
        "--logpath": "systemLog.path",
        "--replSet": "replication.replSetName",
        "--keyFile": "security.keyFile",
        "--pidfilepath": "processManagement.pidFilePath",
        "--tlsMode": "net.tls.mode",
        "--tlsCertificateKeyFile": "net.tls.certificateKeyFile",
        "--tlsCertificateKeyFilePassword": "net.tls.certificateKeyFilePassword",
        "--tlsCAFile": "net.tls.CAFile",
        "--tlsClusterFile": "net.tls.clusterFile",
        "--tlsClusterPassword": "net.tls.clusterPassword",
        "--tlsCRLFile": "net.tls.CRLFile",
        "--tlsDisabledProtocols": "net.tls.disabledProtocols",
        "--clusterAuthMode": "security.clusterAuthMode",
        "--oplogSize": "replication.oplogSizeMB",
        "--unixSocketPrefix": "net.unixDomainSocket.pathPrefix",
        "--timeZoneInfo": "processManagement.timeZoneInfo",
        "--wiredTigerCacheSizeGB": "storage.wiredTiger.engineConfig.cacheSizeGB",
        "--setParameter": "setParameter",
    }
    FLAG_OPTIONS: ClassVar[dict[str, tuple[str, Any]]] = {
        "--bind_ip_all": ("net.bindIpAll", True),
        "--logappend": ("systemLog.logAppend", True),
        "--auth": ("security.authorization", "enabled"),
        "--noauth": ("security.authorization", "disabled"),
        "--fork": ("processManagement.fork", True),
        "--ipv6": ("net.ipv6", True),
        "--nounixsocket": ("net.unixDomainSocket.enabled", False),
        "--quiet": ("systemLog.quiet", True),
        "--tlsAllowConnectionsWithoutCertificates": (
            "net.tls.allowConnectionsWithoutCertificates",
            True,
        ),
        "--tlsAllowInvalidCertificates": ("net.tls.allowInvalidCertificates", True),
        "--tlsAllowInvalidHostnames": ("net.tls.allowInvalidHostnames", True),
        "--transitionToAuth": ("security.transitionToAuth", True),
    }
    INT_OPTIONS: ClassVar[set[str]] = {"net.port", "replication.oplogSizeMB"}
    FLOAT_OPTIONS: ClassVar[set[str]] = {"storage.wiredTiger.engineConfig.cacheSizeGB"}

    def parse(self, argv: list[str]) -> tuple[dict[str, Any], str | None, str | None]:
        """Return (cli options, config file, action) where action is 'help' or 'version'."""
        options: dict[str, Any] = {}
        set_parameters: dict[str, Any] = {}
        config_file = None
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg in ("--help", "-h"):
                return options, config_file, "help"
            if arg == "--version":
                return options, config_file, "version"
            name, eq, inline = arg.partition("=")
            if name.startswith("-v") and set(name[1:]) == {"v"}:
                options["systemLog.verbosity"] = len(name) - 1
            elif name in self.FLAG_OPTIONS and not eq:
                path, value = self.FLAG_OPTIONS[name]
                options[path] = value
            elif name in self.VALUE_OPTIONS:
                if eq:
                    value = inline
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    fail_options(
                        f"Error parsing command line: the required argument for option "
                        f"'{name}' is missing"
                    )
                path = self.VALUE_OPTIONS[name]
                if path == "config":
                    config_file = value
                elif path == "setParameter":
                    key, has_value, param = value.partition("=")
                    if not has_value:
                        fail_options(f'Illegal option assignment: "{value}"')
                    set_parameters[key] = param
                else:
                    options[path] = self._convert(name, path, value)
            else:
                fail_options(f"Error parsing command line: unrecognised option '{name}'")
            i += 1
        if set_parameters:
            options["setParameter"] = set_parameters
        return options, config_file, None

    def _convert(self, flag: str, path: str, value: str) -> Any:
        try:
            if path in self.INT_OPTIONS:
                return int(value)
            if path in self.FLOAT_OPTIONS:
                return float(value)
        except ValueError:
            fail_options(
                f"Error parsing command line: the argument ('{value}') for option "
                f"'{flag}' is invalid"
            )
        return value


def _coerce_parameter(name: str, raw: Any) -> Any:
    default = SET_PARAMETER_DEFAULTS.get(name)
    if isinstance(raw, str):
        if isinstance(default, bool):
            if raw not in ("true", "false", "1", "0"):
                fail_options(f'Bad value for parameter "{name}": {raw}')
            return raw in ("true", "1")
        if isinstance(default, int):
            try:
                return int(raw)
            except ValueError:
                fail_options(f'Bad value for parameter "{name}": {raw}')
    return raw


def help_text() -> str:
    flags = sorted(set(_Parser.VALUE_OPTIONS) | set(_Parser.FLAG_OPTIONS))
    return "Options:\n" + "\n".join(f"  {flag}" for flag in flags) + "\n"


def version_text() -> str:
    info = {
        "version": VERSION,
        "gitVersion": GIT_VERSION,
        "modules": [],
        "allocator": "tcmalloc",
        "environment": {"distarch": "x86_64", "target_arch": "x86_64"},
    }
    return f"db version v{VERSION}\nBuild Info: {json.dumps(info, indent=4)}\n"


def load_settings(argv: list[str]) -> Settings | str:
    """Parse argv (and the config file it names). Returns Settings, or text for --help/--version.

    Exits 2 on option errors, as mongod does.
    """
    cli, config_file, action = _Parser().parse(argv)
    if action == "help":
        return help_text()
    if action == "version":
        return version_text()
    options: dict[str, Any] = {}
    try:
        if config_file is not None:
            try:
                text = Path(config_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise OptionError(f"Error reading config file: {exc.strerror}") from exc
            options = parse_config_text(text)
        if "net.bindIp" in cli and options.get("net.bindIpAll"):
            options.pop("net.bindIpAll")
        if "net.bindIpAll" in cli:
            options.pop("net.bindIp", None)
        params = dict(options.get("setParameter") or {})
        params.update(cli.pop("setParameter", {}))
        options.update(cli)
        for path, value in options.items():
            if path != "setParameter":
                options[path] = _check_type(path, value)
    except OptionError as exc:
        fail_options(str(exc))
    settings = Settings(argv=list(argv), parsed=dict(options, setParameter=params))
    for name, raw in params.items():
        settings.parameters[name] = _coerce_parameter(name, raw)
    settings.port = int(options.get("net.port", 27017))
    if not 0 < settings.port < 65536:
        fail_options(f"BadValue: net.port {settings.port} is out of range")
    if options.get("net.bindIpAll"):
        settings.bind_ips = ["0.0.0.0"] + (["::"] if options.get("net.ipv6") else [])
    elif "net.bindIp" in options:
        settings.bind_ips = _expand_bind_ips(options["net.bindIp"], options.get("net.ipv6", False))
    else:
        settings.bind_ips = ["127.0.0.1"]
    settings.db_path = options.get("storage.dbPath", "/data/db")
    destination = options.get("systemLog.destination")
    if destination == "syslog":
        fail_options("BadValue: systemLog.destination syslog is not supported by this build")
    if destination == "file" and "systemLog.path" not in options:
        fail_options("BadValue: systemLog.path is required if systemLog.destination is to a file")
    settings.log_path = options.get("systemLog.path")
    settings.log_append = bool(options.get("systemLog.logAppend", False))
    settings.log_rotate = options.get("systemLog.logRotate", "rename")
    settings.repl_set = options.get("replication.replSetName")
    settings.key_file = options.get("security.keyFile")
    auth = options.get("security.authorization")
    settings.authorization = auth == "enabled" or (
        settings.key_file is not None
        and auth is None
        and not options.get("security.transitionToAuth")
    )
    if auth == "enabled" and settings.repl_set and not settings.key_file:
        fail_options(
            "BadValue: security.keyFile is required when authorization is enabled with replica sets"
        )
    settings.fork = bool(options.get("processManagement.fork", False))
    settings.pid_file = options.get("processManagement.pidFilePath")
    settings.unix_socket = bool(options.get("net.unixDomainSocket.enabled", True))
    settings.unix_socket_prefix = options.get("net.unixDomainSocket.pathPrefix", "/tmp")
    settings.unix_socket_mode = int(
        str(options.get("net.unixDomainSocket.filePermissions", "0700")), 8
    )
    try:
        settings.tls = _tls_options(options, settings.parameters)
    except InitializationError as exc:
        fail_initialization(exc)
    _redact_passwords(settings)
    return settings


def fail_initialization(exc: InitializationError) -> NoReturn:
    """mongod's answer to an option its global initialization rejects: a fatal log line on the
    console (the log file is not open yet) and exit 1."""
    Log(None, False, "rename").write(
        "F", "CONTROL", 20574, "main", "Error during global initialization", {"error": exc.error()}
    )
    raise SystemExit(EXIT_FAILURE)


def _disabled_protocols(value: str) -> list[str]:
    if value == "none":  # overrides the implicit disabling of TLS 1.0
        return []
    out: list[str] = []
    for token in value.split(","):
        name = token[2:] if token.startswith("no") else token
        if name not in TLS_PROTOCOLS:
            raise InitializationError(2, "BadValue", f"Unrecognized disabledProtocols '{token}'")
        out.append(name)
    return out


def _tls_options(options: dict[str, Any], parameters: dict[str, Any]) -> TlsOptions:
    """net.tls.* with mongod's checks (ssl_options_server.cpp, in its order), then the chain of
    trust that mongod requires since 7.0.6 (SERVER-72839)."""

    def path(key: str) -> str | None:
        value = options.get(key)
        return None if value is None else str(Path(value).absolute())

    tls = TlsOptions(mode=options.get("net.tls.mode", "disabled"))
    tls.certificate_key_file = path("net.tls.certificateKeyFile")
    tls.certificate_key_file_password = options.get("net.tls.certificateKeyFilePassword")
    tls.cluster_file = path("net.tls.clusterFile")
    tls.cluster_password = options.get("net.tls.clusterPassword")
    tls.ca_file = path("net.tls.CAFile")
    tls.crl_file = path("net.tls.CRLFile")
    tls.allow_connections_without_certificates = bool(
        options.get("net.tls.allowConnectionsWithoutCertificates", False)
    )
    tls.allow_invalid_certificates = bool(options.get("net.tls.allowInvalidCertificates", False))
    tls.allow_invalid_hostnames = bool(options.get("net.tls.allowInvalidHostnames", False))
    tls.use_system_ca = bool(parameters.get("tlsUseSystemCA", False))
    if "net.tls.disabledProtocols" in options:
        tls.disabled_protocols = _disabled_protocols(options["net.tls.disabledProtocols"])
        tls.implicit_tls10_disabled = False
    cluster_auth = options.get("security.clusterAuthMode", "keyFile")
    allows_x509 = cluster_auth in ("sendKeyFile", "sendX509", "x509")
    if tls.enabled:
        if not tls.certificate_key_file:
            raise InitializationError(
                2,
                "BadValue",
                "need tlsCertificateKeyFile or certificateSelector when TLS is enabled",
            )
        if tls.crl_file and not tls.ca_file:
            raise InitializationError(2, "BadValue", "need tlsCAFile with tlsCRLFile")
        if not tls.ca_file and allows_x509:
            raise InitializationError(
                2,
                "BadValue",
                "No TLS certificate validation can be performed since no CA file has been "
                "provided; please specify an tlsCAFile parameter",
            )
    elif (
        any(
            options.get(key) is not None
            for key in (
                "net.tls.certificateKeyFile",
                "net.tls.certificateKeyFilePassword",
                "net.tls.clusterFile",
                "net.tls.clusterPassword",
                "net.tls.CAFile",
                "net.tls.CRLFile",
                "net.tls.disabledProtocols",
            )
        )
        or tls.allow_connections_without_certificates
    ):
        raise InitializationError(
            2,
            "BadValue",
            "need to enable TLS via the sslMode/tlsMode flag when using TLS configuration "
            "parameters",
        )
    if allows_x509 and not tls.enabled:
        raise InitializationError(2, "BadValue", "need to enable TLS via the tlsMode flag")
    if (
        tls.mode == "allowTLS"
        and cluster_auth in ("sendX509", "x509")
        and not options.get("security.transitionToAuth")
    ):
        raise InitializationError(
            2, "BadValue", "cannot have x.509 cluster authentication in allowTLS mode"
        )
    if tls.enabled and tls.ca_file is None and not tls.use_system_ca:
        raise InitializationError(
            72,
            "InvalidOptions",
            "The use of TLS without specifying a chain of trust is no longer supported",
        )
    if tls.enabled and tls.ca_file is not None and tls.use_system_ca:
        raise InitializationError(
            72,
            "InvalidOptions",
            "The use of both a CA File and the System Certificate store is not supported.",
        )
    return tls


def _redact_passwords(settings: Settings) -> None:
    """Passwords never reach the log or getCmdLineOpts: mongod shows "<password>" instead."""
    for path in PASSWORD_OPTIONS:
        if path in settings.parsed:
            settings.parsed[path] = "<password>"
    flags = set(PASSWORD_OPTIONS.values())
    argv = settings.argv
    for i, arg in enumerate(argv):
        name, eq, _ = arg.partition("=")
        if name in flags:
            if eq:
                argv[i] = f"{name}=<password>"
            elif i + 1 < len(argv):
                argv[i + 1] = "<password>"


def _expand_bind_ips(value: str, ipv6: bool) -> list[str]:
    out: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item == "localhost":
            out.append("127.0.0.1")
            if ipv6:
                out.append("::1")
        else:
            out.append(item)
    return list(dict.fromkeys(out))


class KeyFileError(Exception):
    """The keyFile cannot be used; mongod logs the reason and refuses to start."""


_KEY_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def read_key_file(path: str) -> str:
    """Return the key (whitespace removed) after mongod's checks: permissions, alphabet, length."""
    try:
        info = Path(path).stat()
    except OSError as exc:
        raise KeyFileError(f"Error reading file {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"permissions on {path} are too open")
    try:
        raw = Path(path).read_text(encoding="latin-1")
    except OSError as exc:
        raise KeyFileError(f"Error reading file {path}: {exc.strerror}") from exc
    key = "".join(raw.split())
    for char in key:
        if char not in _KEY_CHARS:
            raise KeyFileError(f"invalid char in key file {path}: {char}")
    if not 6 <= len(key) <= 1024:
        raise KeyFileError(
            f"security key in {path} has length {len(key)}, must be between 6 and 1024 chars"
        )
    return key


class Log:
    """mongod 4.4+ structured JSON log lines, to a file or stdout; reopen/rename on SIGUSR1."""

    def __init__(self, path: str | None, append: bool, rotate: str) -> None:
        self.path = path
        self.rotate_mode = rotate
        self._lock = threading.Lock()
        self._stream = self._open(append) if path else sys.stdout

    def _open(self, append: bool) -> Any:
        assert self.path is not None
        path = Path(self.path)
        if not append and path.exists():
            stamp = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
            path.rename(f"{self.path}.{stamp}")
        return path.open("a", encoding="utf-8", buffering=1)

    def write(
        self,
        severity: str,
        component: str,
        log_id: int | None,
        ctx: str,
        msg: str,
        attr: dict[str, Any] | None = None,
    ) -> None:
        """One JSON log line; `log_id` None (a message of the double that has no known mongod
        id) leaves the "id" field out rather than inventing one."""
        now = datetime.datetime.now(UTC)
        entry: dict[str, Any] = {
            "t": {"$date": now.isoformat(timespec="milliseconds")},
            "s": severity,
            "c": component,
            "id": log_id,
            "ctx": ctx,
            "msg": msg,
        }
        if log_id is None:
            del entry["id"]
        if attr:
            entry["attr"] = to_extended_json(attr)
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def info(self, component: str, log_id: int | None, ctx: str, msg: str, **attr: Any) -> None:
        self.write("I", component, log_id, ctx, msg, attr)

    def warning(self, component: str, log_id: int | None, ctx: str, msg: str, **attr: Any) -> None:
        self.write("W", component, log_id, ctx, msg, attr)

    def error(self, component: str, log_id: int | None, ctx: str, msg: str, **attr: Any) -> None:
        self.write("E", component, log_id, ctx, msg, attr)

    def rotate(self) -> None:
        if self.path is None:
            return
        with self._lock:
            self._stream.close()
            if self.rotate_mode == "rename":
                self._stream = self._open(append=False)
            else:
                self._stream = self._open(append=True)
        self.info("CONTROL", 23138, "SignalHandler", "Log rotation initiated")

    def close(self) -> None:
        if self.path is not None:
            self._stream.close()
