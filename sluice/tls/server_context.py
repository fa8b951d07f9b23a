"""A `DownstreamTlsContext` as an `ssl.SSLContext` for a listener's TLS transport socket.

What Envoy 1.40 does with each field (``source/common/tls/context_config_impl.cc``,
``context_impl.cc``, ``server_context_impl.cc``), checked against ``envoy --mode validate`` and a
running Envoy probed with Python's `ssl` client:

- versions: TLS 1.2 to TLS 1.3 unless ``tls_params`` says otherwise (1.0 and 1.1 clients get a
  protocol_version alert);
- TLS ≤ 1.2 ciphers: Envoy's default server list, the server's preference first
  (``prefer_client_ciphers`` false); an unknown name is ``Failed to initialize cipher suites
  A:B. The following ciphers were rejected when tried individually: B``;
- ``ecdh_curves``: an unknown name is ``Failed to initialize ECDH curves A:B``;
- ``alpn_protocols``: offered in order (none configured: no ALPN, so HTTP/1.1 on AUTO);
- ``validation_context.trusted_ca``: a missing file is ``Invalid path: PATH``, one without a
  certificate ``Failed to load trusted CA certificates from PATH``; with a CA a client
  certificate is asked for, and ``require_client_certificate`` makes it mandatory.

Anything else in the message is refused with the path of the field and "is not implemented yet"
(the listener then does not start, as the config checks do for other extensions).
"""

from __future__ import annotations

import ssl
from typing import Any

from sluice.errors import ConfigError
from sluice.tls.certificates import PemSource, load_certificate

# Envoy's default server cipher list (TLS 1.0-1.2). Deliberate difference: BoringSSL's
# equal-preference groups ``[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]`` let
# the client's order pick within a group; OpenSSL has none, so each group's first member is
# preferred (a client that lists CHACHA20 before AES128-GCM gets AES128-GCM, Envoy gives it
# CHACHA20).
DEFAULT_SERVER_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
)  # fmt: skip

# TlsParameters.TlsProtocol: TLS_AUTO(0), TLSv1_0(1) … TLSv1_3(4).
_VERSIONS = {1: ssl.TLSVersion.TLSv1, 2: ssl.TLSVersion.TLSv1_1, 3: ssl.TLSVersion.TLSv1_2, 4: ssl.TLSVersion.TLSv1_3}
_DEFAULT_MIN, _DEFAULT_MAX = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

# The fields this module carries out; every other set field is refused by name.
_DOWNSTREAM_FIELDS = {"common_tls_context", "require_client_certificate"}
_COMMON_FIELDS = {"tls_certificates", "tls_params", "alpn_protocols", "validation_context"}
_PARAMS_FIELDS = {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"}
_VALIDATION_FIELDS = {"trusted_ca"}
_CERT_FIELDS = {"certificate_chain", "private_key"}


def server_context(tls: Any, path: str) -> ssl.SSLContext:
    """The server context for ``tls`` (a ``DownstreamTlsContext``); ``path`` is the field's path
    in the config (``static_resources.listeners[0].filter_chains[0].transport_socket``), for the
    "not implemented" messages. Envoy's own errors are raised with Envoy's words."""
    _refuse_unimplemented(tls, _DOWNSTREAM_FIELDS, f"{path}.typed_config")
    common = tls.common_tls_context
    common_path = f"{path}.typed_config.common_tls_context"
    _refuse_unimplemented(common, _COMMON_FIELDS, common_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    _versions(context, common.tls_params, common_path)
    _ciphers(context, common.tls_params, common_path)
    _curves(context, common.tls_params, common_path)
    _certificates(context, common, common_path)
    if common.alpn_protocols:
        context.set_alpn_protocols(list(common.alpn_protocols))
    _validation(context, tls, common, common_path)
    return context


def _refuse_unimplemented(message: Any, implemented: set[str], path: str) -> None:
    for field, _ in message.ListFields():
        if field.name not in implemented:
            raise ConfigError(f"{path}.{field.name}: is not implemented yet")


def _versions(context: ssl.SSLContext, params: Any, path: str) -> None:
    _refuse_unimplemented(params, _PARAMS_FIELDS, f"{path}.tls_params")
    context.minimum_version = _VERSIONS.get(params.tls_minimum_protocol_version, _DEFAULT_MIN)
    context.maximum_version = _VERSIONS.get(params.tls_maximum_protocol_version, _DEFAULT_MAX)
    # (min above max: Envoy accepts the config and every handshake fails; so does OpenSSL.)


def _ciphers(context: ssl.SSLContext, params: Any, path: str) -> None:
    names = list(params.cipher_suites) or list(DEFAULT_SERVER_CIPHERS)
    if any(n.startswith("[") or "|" in n for n in names):
        raise ConfigError(f"{path}.tls_params.cipher_suites: BoringSSL equal-preference groups ([A|B]) are not implemented yet")
    spec = ":".join(names)
    rejected = [n for n in names if not _cipher_known(n)]
    if rejected:
        raise ConfigError(
            f"Failed to initialize cipher suites {spec}. The following ciphers were rejected when tried individually: "
            + ", ".join(rejected)
        )
    context.set_ciphers(spec)


def _cipher_known(name: str) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers(name)
    except ssl.SSLError:
        return False
    # OpenSSL accepts a spec that selects no TLS ≤ 1.2 cipher (its TLS 1.3 suites stay): a name
    # is known only if it selects one.
    return any(c["protocol"] != "TLSv1.3" for c in probe.get_ciphers())


# BoringSSL's group names (and aliases) → the OpenSSL curve name Python's ssl can set (None: a
# group Python's ``set_ecdh_curve``, which takes EC curves only, cannot set).
_GROUPS: dict[str, str | None] = {
    "P-224": "secp224r1", "secp224r1": "secp224r1", "P-256": "prime256v1", "prime256v1": "prime256v1",
    "P-384": "secp384r1", "secp384r1": "secp384r1", "P-521": "secp521r1", "secp521r1": "secp521r1",
    "X25519": None, "X25519Kyber768Draft00": None, "X25519MLKEM768": None, "MLKEM1024": None,
}  # fmt: skip


def _curves(context: ssl.SSLContext, params: Any, path: str) -> None:
    curves = list(params.ecdh_curves)
    if not curves:
        # Deliberate difference: Envoy's default groups are X25519:P-256; Python's ssl cannot
        # set a list, so OpenSSL's defaults (X25519 first, then P-256, …) stay.
        return
    if any(c not in _GROUPS for c in curves):
        raise ConfigError(f"Failed to initialize ECDH curves {':'.join(curves)}")
    where = f"{path}.tls_params.ecdh_curves"
    if len(curves) > 1:
        raise ConfigError(f"{where}: more than one curve is not implemented yet (Python's ssl sets one group)")
    name = _GROUPS[curves[0]]
    if name is None:
        raise ConfigError(f"{where}: {curves[0]} alone is not implemented yet (Python's ssl sets EC curves only)")
    context.set_ecdh_curve(name)


def _certificates(context: ssl.SSLContext, common: Any, path: str) -> None:
    certs = list(common.tls_certificates)
    if not certs:
        raise ConfigError("No TLS certificates found for server context")  # Envoy's words
    if len(certs) > 1:
        raise ConfigError(f"{path}.tls_certificates: more than one certificate (selection by key type and SNI) is not implemented yet")
    cert = certs[0]
    _refuse_unimplemented(cert, _CERT_FIELDS, f"{path}.tls_certificates[0]")
    load_certificate(
        context,
        pem_source(cert.certificate_chain, f"{path}.tls_certificates[0].certificate_chain"),
        pem_source(cert.private_key, f"{path}.tls_certificates[0].private_key"),
    )


def _validation(context: ssl.SSLContext, tls: Any, common: Any, path: str) -> None:
    if not common.HasField("validation_context"):
        if tls.require_client_certificate.value:
            # Envoy then asks for any certificate and accepts it unverified; Python's ssl has no
            # verify callback to accept an untrusted one.
            raise ConfigError(
                f"{path}: require_client_certificate without validation_context.trusted_ca is not implemented yet"
            )
        context.verify_mode = ssl.CERT_NONE
        return
    validation = common.validation_context
    _refuse_unimplemented(validation, _VALIDATION_FIELDS, f"{path}.validation_context")
    if not validation.HasField("trusted_ca"):
        raise ConfigError(f"{path}.validation_context: a validation context without trusted_ca is not implemented yet")
    source = pem_source(validation.trusted_ca, f"{path}.validation_context.trusted_ca")
    pem = source.read()
    if pem is None:
        raise ConfigError(f"Invalid path: {source.name}")
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"Failed to load trusted CA certificates from {source.name}") from None
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate.value else ssl.CERT_OPTIONAL


def pem_source(source: Any, path: str) -> PemSource:
    """A ``config.core.v3.DataSource`` as a PemSource."""
    kind = source.WhichOneof("specifier")
    if kind == "filename":
        return PemSource(source.filename)
    if kind == "inline_string":
        return PemSource(None, source.inline_string.encode())
    if kind == "inline_bytes":
        return PemSource(None, bytes(source.inline_bytes))
    raise ConfigError(f"{path}.{kind}: is not implemented yet (filename, inline_string, inline_bytes are)")
