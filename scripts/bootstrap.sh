#!/usr/bin/env bash
# Sets up what the node and its tests need on a fresh Debian machine:
#   deps  - Debian packages the tests use (PostgreSQL server; DCMTK for the imaging tests)
#   venv  - the Python virtual environment in .venv with the project installed (editable)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
[ -x /usr/bin/storescu ] || need_apt+=(dcmtk)   # the DICOM peer of the imaging tests

deps() {
  if ((${#need_apt[@]})); then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
}

venv() {
  local py=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
  fi
  local stamp=.venv/.installed
  if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
  fi
}

case "${1:-all}" in
  deps) deps ;;
  venv) venv ;;
  all) deps; venv ;;
  *) echo "usage: $0 [deps|venv|all]" >&2; exit 2 ;;
esac
