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
