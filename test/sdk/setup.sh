#!/usr/bin/env bash
# Creates (or refreshes) test/sdk/.venv with the platforms' pinned Python SDKs, for the real-SDK
# tests (test/sdk-*.test.ts). Needs Python >= 3.12 (some SDKs require it): python3.13/python3.12
# on PATH, or a pyenv-installed 3.12+/3.13+ under $(pyenv root)/versions. Idempotent: does nothing
# when the venv already matches the requirement files. Local one-liner: `bash test/sdk/setup.sh`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"

ok() { [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local c root
  for c in "${SDK_PYTHON:-}" "$(command -v python3.13 || true)" "$(command -v python3.12 || true)"; do
    if ok "$c"; then echo "$c"; return 0; fi
  done
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for c in $(ls -d "$root"/versions/3.1[3-9]*/bin/python3 "$root"/versions/3.12*/bin/python3 2>/dev/null | sort -r); do
    if ok "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

stamp="$(cat "$here/requirements.txt" "$here/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$stamp" ]; then
  echo "test/sdk/.venv is current ($("$venv/bin/python" --version))"
  exit 0
fi

if ! py="$(find_python)"; then
  echo "test/sdk/setup.sh: no Python >= 3.12 found (looked for \$SDK_PYTHON, python3.13 and python3.12 on PATH," >&2
  echo "and pyenv versions under \$(pyenv root)/versions). Install one, e.g. 'pyenv install 3.12', or set SDK_PYTHON." >&2
  exit 1
fi
echo "test/sdk/.venv: creating with $py ($("$py" --version))"
rm -rf "$venv"
"$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
"${pip[@]}" -r "$here/requirements.txt"
"${pip[@]}" --no-deps -r "$here/requirements-nodeps.txt"
echo "$stamp" >"$venv/.requirements.sha256"
echo "test/sdk/.venv ready: $("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -ciE '^(sailhouse|polos-sdk|kubiya|terminaluse)') SDK packages"
