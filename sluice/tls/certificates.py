"""Loading a `TlsCertificate` (chain + key) into an `ssl.SSLContext` with Envoy's errors.

Envoy (`source/common/tls/context_impl.cc`, `tls_certificate_config_impl.cc`) reads each
DataSource, then loads the chain and then the key; its messages, checked with Envoy 1.40's
`--mode validate`, are:

- a chain that does not parse: ``Failed to load certificate chain from PATH``
- a key that does not parse: ``Failed to load private key from PATH, Cause: error:0900006e:PEM
  routines:OPENSSL_internal:NO_START_LINE``
- a key that does not match: ``Failed to load private key from PATH, Cause:
  error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH``
- a chain file that does not exist: ``Failed to load incomplete certificate from PATH:
  certificate chain not set``

Python's `ssl` loads certificates only from paths, so inline PEM goes through an anonymous
in-memory file (`memfd_create`, read back as `/proc/self/fd/N`): nothing touches the disk.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from sluice.errors import ConfigError

# Envoy's own (BoringSSL) error strings for the causes Python's OpenSSL reports differently.
# Divergence from Envoy: another OpenSSL failure is reported with OpenSSL's text, not BoringSSL's.
_NO_START_LINE = "error:0900006e:PEM routines:OPENSSL_internal:NO_START_LINE"
_KEY_MISMATCH = "error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH"
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class PemSource:
    """One DataSource: `filename` (path set) or inline bytes (`inline_string`/`inline_bytes`)."""

    path: str | None
    """The file name Envoy names in its errors, or None for inline data."""
    data: bytes | None = None
    """The inline PEM bytes."""

    @property
    def name(self) -> str:
        # Envoy names inline data "<inline>" in these messages.
        return self.path if self.path is not None else "<inline>"

    def read(self) -> bytes | None:
        if self.path is None:
            return self.data
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return None


def load_certificate(context: ssl.SSLContext, chain: PemSource, key: PemSource) -> None:
    """Load one certificate chain and its key into `context`, raising Envoy's ConfigError."""
    chain_pem = chain.read()
    if chain_pem is None:
        raise ConfigError(
            f"Failed to load incomplete certificate from {chain.name}: certificate chain not set"
        )
    if _PEM_CERT not in chain_pem or not _parses(chain_pem):
        raise ConfigError(f"Failed to load certificate chain from {chain.name}")
    key_pem = key.read()
    if key_pem is None or b"-----BEGIN" not in key_pem:
        raise ConfigError(f"Failed to load private key from {key.name}, Cause: {_NO_START_LINE}")
    chain_fd = _memfile(chain_pem)
    key_fd = _memfile(key_pem)
    try:
        context.load_cert_chain(f"/proc/self/fd/{chain_fd}", f"/proc/self/fd/{key_fd}")
    except ssl.SSLError as e:
        cause = _KEY_MISMATCH if "KEY_VALUES_MISMATCH" in str(e) else str(e)
        raise ConfigError(f"Failed to load private key from {key.name}, Cause: {cause}") from e
    finally:
        os.close(chain_fd)
        os.close(key_fd)


def _parses(pem: bytes) -> bool:
    start = pem.index(_PEM_CERT)
    end = pem.find(b"-----END CERTIFICATE-----", start)
    if end < 0:
        return False
    try:
        ssl.PEM_cert_to_DER_cert(pem[start : end + 25].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _memfile(data: bytes) -> int:
    fd = os.memfd_create("sluice-tls", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd
