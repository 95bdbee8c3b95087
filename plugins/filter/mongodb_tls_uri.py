"""Jinja filter: a MongoDB connection string with the TLS options of a client."""

from __future__ import annotations

import re
from urllib.parse import quote

DOCUMENTATION = r"""
---
name: mongodb_tls_uri
short_description: Add a client's TLS options to a MongoDB connection string
version_added: 0.1.0
description:
  - Returns the connection string with C(tls=true), C(tlsCAFile) and C(tlsCertificateKeyFile)
    added to its options, the names that pymongo, the Node.js driver and mongo-tools all read;
    with an empty O(ca_file), the connection string unchanged (plaintext).
  - The paths are percent-encoded. A connection string that already names a TLS option is refused,
    so that one place decides whether a client uses TLS.
positional: _input, ca_file, certificate_key_file
options:
  _input:
    description: A C(mongodb://) connection string.
    type: str
    required: true
  ca_file:
    description: The CA bundle that verifies the server's certificate; empty for plaintext.
    type: str
    required: true
  certificate_key_file:
    description: The client's certificate and key (PEM) it presents to the server.
    type: str
    required: true
"""

EXAMPLES = r"""
uri: >-
  {{ 'mongodb://backup@127.0.0.1:27017/?authSource=admin'
     | clinic.infra.mongodb_tls_uri('/etc/clinic/tls/ca.pem', '/etc/clinic/tls/host.pem') }}
"""

RETURN = r"""
_value:
  description: The connection string with the TLS options, or unchanged when O(ca_file) is empty.
  type: str
"""

TLS_OPTION = re.compile(r"[?&](tls|ssl)[a-z]*=", re.IGNORECASE)


def mongodb_tls_uri(uri: str, ca_file: str, certificate_key_file: str) -> str:
    if not str(uri).startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"not a MongoDB connection string: {uri!r}")
    if TLS_OPTION.search(uri):
        raise ValueError("the connection string already names a TLS option")
    if not ca_file:
        return uri
    if not certificate_key_file:
        raise ValueError("a TLS client needs certificate_key_file as well as ca_file")
    options = "&".join(
        [
            "tls=true",
            f"tlsCAFile={quote(ca_file, safe='/')}",
            f"tlsCertificateKeyFile={quote(certificate_key_file, safe='/')}",
        ]
    )
    if "?" in uri:
        return f"{uri}&{options}" if not uri.endswith(("?", "&")) else f"{uri}{options}"
    # The options follow the path: mongodb://host/?... (the slash is required before them).
    hosts_end = uri.find("/", uri.index("://") + 3)
    return f"{uri}?{options}" if hosts_end != -1 else f"{uri}/?{options}"


class FilterModule:
    def filters(self) -> dict:
        return {"mongodb_tls_uri": mongodb_tls_uri}
