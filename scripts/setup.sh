# Sourced by scripts/lab.sh and scripts/test.sh: `ensure_venv [EXTRAS]` makes .venv and installs
# sluice into it (with EXTRAS, e.g. "test"), one printed line per step. The install is skipped
# when pyproject.toml has not changed since the last one (a stamp in .venv records its hash and
# the extras installed); pip's output is shown only when it fails.

ensure_venv() {
  local extras="${1:-}" spec="." stamp=".venv/.sluice-install-stamp" want have
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (python3 -m venv)"
    python3 -m venv .venv || { echo "setup: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; return 1; }
  fi
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras:-base}"
  have="$(cat "$stamp" 2>/dev/null || true)"
  # A test install includes everything the base install has.
  if [ "$have" = "$want" ] || { [ -z "$extras" ] && [ "${have%% *}" = "${want%% *}" ]; }; then
    echo "setup: .venv is up to date (pyproject.toml unchanged since the last install)"
    return 0
  fi
  [ -n "$extras" ] && spec=".[$extras]"
  echo "setup: installing sluice and its dependencies into .venv (pip install -e '$spec')"
  local log
  log="$(mktemp)"
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e "$spec" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log" "$stamp"
    echo "setup: pip install -e '$spec' failed (its output is above)" >&2
    return 1
  fi
  rm -f "$log"
  echo "$want" > "$stamp"
}

# `ensure_apt_package BINARY PACKAGE WHAT`: a Debian package some tests or labs need (WHAT says
# which), installed with apt-get when BINARY is missing and we are root with apt (`apt-get update`
# once per run first; the package's services are kept from starting, as in a container). One
# printed line either way; as another user, or without apt, one line says how to install it.
_sluice_apt_updated=""
ensure_apt_package() {
  local binary="$1" package="$2" what="$3" log policy="${SLUICE_POLICY_RC_D:-/usr/sbin/policy-rc.d}" made="" rc=0
  if [ -x "$binary" ]; then
    echo "setup: $package is installed ($binary)"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: $binary is missing ($what needs it): apt-get install $package" >&2
    return 0
  fi
  echo "setup: installing $package for $what (apt-get install $package)"
  log="$(mktemp)"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made=1
  fi
  if [ -z "$_sluice_apt_updated" ]; then
    apt-get update -qq >"$log" 2>&1 && _sluice_apt_updated=1 || rc=$?
  fi
  if [ "$rc" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >>"$log" 2>&1 || rc=$?
  fi
  [ -n "$made" ] && rm -f "$policy"
  if [ "$rc" != 0 ] || [ ! -x "$binary" ]; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: apt-get install $package failed (its output is above)" >&2
    return 1
  fi
  rm -f "$log"
}

# The metrics labs' prom/prometheus runs the real Prometheus (Debian's package).
ensure_prometheus() {
  ensure_apt_package /usr/bin/prometheus prometheus "prom/prometheus in the metrics labs"
}
