"""Certificate loading: Envoy 1.40's messages (checked with `envoy --mode validate`)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.tls.certificates import PemSource, load_certificate

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _pair(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("certs")
    return {"a": _pair(tmp, "a"), "b": _pair(tmp, "b")}


def _ctx() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def test_files_and_inline(pairs: dict[str, tuple[Path, Path]]) -> None:
    cert, key = pairs["a"]
    load_certificate(_ctx(), PemSource(str(cert)), PemSource(str(key)))
    load_certificate(_ctx(), PemSource(None, cert.read_bytes()), PemSource(None, key.read_bytes()))


def test_envoy_errors(pairs: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    cert, key = pairs["a"]
    _, other_key = pairs["b"]
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage\n")
    cases = [
        (str(tmp_path / "nope.pem"), str(key),
         f"Failed to load incomplete certificate from {tmp_path}/nope.pem: certificate chain not set"),
        (str(bad), str(key), f"Failed to load certificate chain from {bad}"),
        (str(cert), str(bad), f"Failed to load private key from {bad}, Cause: "
         "error:0900006e:PEM routines:OPENSSL_internal:NO_START_LINE"),
        (str(cert), str(other_key), f"Failed to load private key from {other_key}, Cause: "
         "error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH"),
    ]
    for chain, k, message in cases:
        with pytest.raises(ConfigError) as e:
            load_certificate(_ctx(), PemSource(chain), PemSource(k))
        assert str(e.value) == message
