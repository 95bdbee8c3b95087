"""TLS as mongod speaks it (net.tls.*): the certificates loaded and checked at startup, the context
for accepted connections, the context for the member's own connections to its peers, and the
decision, on a port that accepts both, between a TLS handshake and plaintext.

mongod's behaviour followed here (7.0, OpenSSL build): ssl_manager_openssl.cpp (PEM loading and
peer certificate validation, log ids 23248-23256), ssl_options_server.cpp (option checks, TLS 1.0
disabled unless net.tls.disabledProtocols says otherwise) and the asio session's ingress check
(the first message's responseTo field tells a TLS ClientHello from a wire protocol message).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config

# mongod's default cipher configuration (kSSLCipherConfigDefault). It leaves OpenSSL's default
# security level in place, where Python's own default would raise it.
CIPHERS = "HIGH:!EXPORT:!aNULL@STRENGTH"

_NO_PROTOCOL = {
    "TLS1_0": ssl.OP_NO_TLSv1,
    "TLS1_1": ssl.OP_NO_TLSv1_1,
    "TLS1_2": ssl.OP_NO_TLSv1_2,
    "TLS1_3": ssl.OP_NO_TLSv1_3,
}

INVALID_SSL_CONFIGURATION = (140, "InvalidSSLConfiguration")
HEADER_SIZE = 16
# A client that opened a connection and sent part of a message header: peek again after this.
_PEEK_RETRY_SECONDS = 0.005


class TlsSetupError(Exception):
    """The TLS configuration cannot be used: mongod fails its global initialization (exit 1)."""

    def __init__(self, message: str, code: tuple[int, str] = INVALID_SSL_CONFIGURATION) -> None:
        super().__init__(message)
        self.code, self.code_name = code

    def error(self) -> dict[str, Any]:
        return {"code": self.code, "codeName": self.code_name, "errmsg": str(self)}


@dataclass
class Tls:
    """The process's TLS state: the options and both contexts (mongod's SSLManager)."""

    options: config.TlsOptions
    ingress: ssl.SSLContext
    egress_context: ssl.SSLContext

    @property
    def egress(self) -> ssl.SSLContext | None:
        """The context for connections to peers; None (plaintext) unless preferTLS/requireTLS."""
        return self.egress_context if self.options.egress else None

    @property
    def require(self) -> bool:
        return self.options.mode == "requireTLS"

    @property
    def requests_certificates(self) -> bool:
        return self.ingress.verify_mode != ssl.CERT_NONE


def setup(options: config.TlsOptions, log: config.Log) -> Tls | None:
    """Both contexts, or None when TLS is disabled. Raises TlsSetupError as mongod fails."""
    if not options.enabled:
        return None
    assert options.certificate_key_file is not None  # checked with the options
    ingress = _context(ssl.PROTOCOL_TLS_SERVER, options)
    _load_pem(
        ingress,
        options.certificate_key_file,
        options.certificate_key_file_password,
        log,
        "Can not set up PEM key file.",
    )
    _load_trust(ingress, options, ssl.Purpose.CLIENT_AUTH)
    # mongod asks every client for a certificate (SSL_VERIFY_PEER) and decides after the
    # handshake: none presented is refused unless allowConnectionsWithoutCertificates. Python has
    # no verify callback, so a certificate that fails verification fails the handshake itself,
    # and allowInvalidCertificates can only be had by not asking for certificates at all.
    ingress.verify_mode = ssl.CERT_NONE if options.allow_invalid_certificates else ssl.CERT_OPTIONAL

    egress = _context(ssl.PROTOCOL_TLS_CLIENT, options)
    if options.cluster_file is not None:
        _load_pem(
            egress,
            options.cluster_file,
            options.cluster_password,
            log,
            "Can not set up ssl clusterFile.",
        )
    else:
        _load_pem(
            egress,
            options.certificate_key_file,
            options.certificate_key_file_password,
            log,
            "Can not set up PEM key file.",
        )
    _load_trust(egress, options, ssl.Purpose.SERVER_AUTH)
    if options.allow_invalid_certificates or options.allow_invalid_hostnames:
        egress.check_hostname = False
    if options.allow_invalid_certificates:
        egress.verify_mode = ssl.CERT_NONE

    _check_certificate(options.certificate_key_file, log, server=True)
    if options.cluster_file is not None:
        _check_certificate(options.cluster_file, log, server=False)
    return Tls(options, ingress, egress)


def _context(protocol: int, options: config.TlsOptions) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.set_ciphers(CIPHERS)
    with warnings.catch_warnings():
        # OP_NO_TLS* are deprecated in favour of minimum/maximum_version, which cannot express a
        # hole in the range ("TLS1_2" alone disabled), which disabledProtocols can.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
        for name in options.disabled_protocols:
            context.options |= _NO_PROTOCOL[name]
    return context


def _password(password: str | None) -> Callable[[], str]:
    # mongod prompts on the terminal for the passphrase of an encrypted key given without one;
    # the double never prompts: the empty passphrase fails to decrypt the key.
    return lambda: password or ""


def _load_pem(
    context: ssl.SSLContext, path: str, password: str | None, log: config.Log, failure: str
) -> None:
    """mongod's _setupPEM: the certificate chain, then the key, then that both go together."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        log.error(
            "NETWORK",
            23248,
            "main",
            "Cannot read certificate file",
            keyFile=path,
            error=exc.strerror or str(exc),
        )
        raise TlsSetupError(failure) from exc
    try:
        context.load_cert_chain(path, password=_password(password))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            log.error(
                "NETWORK",
                23253,
                "main",
                "SSL certificate validation failed",
                keyFile=path,
                error=str(exc),
            )
        elif b"-----BEGIN CERTIFICATE-----" not in data:
            log.error(
                "NETWORK",
                23248,
                "main",
                "Cannot read certificate file",
                keyFile=path,
                error=str(exc),
            )
        else:
            log.error("NETWORK", 23251, "main", "Cannot read PEM key", keyFile=path, error=str(exc))
        raise TlsSetupError(failure) from exc


def _load_trust(context: ssl.SSLContext, options: config.TlsOptions, purpose: ssl.Purpose) -> None:
    if options.ca_file is not None:
        try:
            context.load_verify_locations(cafile=options.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                f"cannot read certificate authority file: {options.ca_file} {exc}"
            ) from exc
    else:  # tlsUseSystemCA=true (checked with the options)
        context.load_default_certs(purpose)
    if options.crl_file is not None:
        try:
            context.load_verify_locations(cafile=options.crl_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError("Can not set up CRL file.") from exc
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _decode_certificate(path: str) -> dict[str, Any] | None:
    """The first certificate of a PEM file, decoded as getpeercert() would; None if the running
    Python cannot decode a file (the helper is CPython's own, used by its test suite)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        return dict(decode(path))
    except (ssl.SSLError, OSError, ValueError):
        return None


def _date(value: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(value), datetime.UTC)


def _check_certificate(path: str, log: config.Log, server: bool) -> None:
    """mongod's _parseAndValidateCertificate: refuse a certificate outside its validity period;
    warn when the server certificate has no Subject Alternative Name."""
    cert = _decode_certificate(path)
    if cert is None:
        return
    not_before, not_after = _date(cert["notBefore"]), _date(cert["notAfter"])
    now = datetime.datetime.now(datetime.UTC)
    if not not_before <= now <= not_after:
        raise TlsSetupError(
            "The provided SSL certificate is expired or not yet valid. notBefore "
            f"{not_before.isoformat(timespec='milliseconds')}, notAfter "
            f"{not_after.isoformat(timespec='milliseconds')}"
        )
    if server and not cert.get("subjectAltName"):
        log.warning(
            "NETWORK",
            551190,
            "main",
            "Server certificate has no compatible Subject Alternative Name. This may prevent "
            "TLS clients from connecting",
        )


# Ingress


class HeldReadingProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol whose transport does not read until told to: the server peeks at the
    first bytes on the socket itself, so that a TLS ClientHello is still unread when the
    connection is handed to the TLS layer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        # Python 3.11.2 (Debian 12's) starts the transport's reader right after connection_made
        # even when it is paused, and a ClientHello that arrives then is read as plaintext: the
        # handshake hangs. Once that has happened, resuming and pausing again removes the reader
        # and cancels any read it queued (later 3.11 releases check the pause themselves). This
        # runs before the connection's task (started by super().connection_made) peeks.
        asyncio.get_running_loop().call_soon(self._hold_again, transport)
        super().connection_made(transport)

    @staticmethod
    def _hold_again(transport: asyncio.ReadTransport) -> None:
        if not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()
            transport.pause_reading()


async def peek_header(writer: asyncio.StreamWriter) -> bytes:
    """The first HEADER_SIZE bytes the client sent, left unread on the socket (fewer if the
    client closed the connection before sending them)."""
    loop = asyncio.get_running_loop()
    raw = writer.get_extra_info("socket")
    # A duplicate of the descriptor, so that MSG_PEEK can be used; it shares the open file (and
    # its non-blocking mode) with the transport's socket.
    sock = socket.fromfd(raw.fileno(), raw.family, raw.type)
    try:
        sock.setblocking(False)
        while True:
            try:
                data = sock.recv(HEADER_SIZE, socket.MSG_PEEK)
            except BlockingIOError:
                await _readable(loop, sock)
                continue
            except OSError:
                return b""
            if len(data) >= HEADER_SIZE or not data:
                return data
            await asyncio.sleep(_PEEK_RETRY_SECONDS)
    finally:
        sock.close()


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def is_tls_hello(header: bytes) -> bool:
    """mongod's test: a client's first wire message has responseTo 0 or -1; anything else is
    taken for a TLS handshake (the bytes of a ClientHello at that offset are never 0 or -1)."""
    response_to = int.from_bytes(header[8:12], "little", signed=True)
    return response_to not in (0, -1)


def verify_failure(exc: BaseException) -> str | None:
    """The reason a peer certificate failed verification, None for other handshake errors."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message or exc.reason or exc)
    return None
