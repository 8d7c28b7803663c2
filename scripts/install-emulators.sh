#!/usr/bin/env bash
# Install the local BigQuery emulator (crucible-emulator) in its own venv.
#
# It cannot share the project's .venv: it pins duckdb==1.5.6 and the project pins duckdb 2.x.
# The exact pins are in requirements/emulators.lock. Idempotent: does nothing when the venv was
# built from the current lock. Called by the cloud tests on first use (tests/e2e/emulators.py) and
# usable by hand or from CI:  bash scripts/install-emulators.sh
# gcp-storage-emulator (Cloud Storage) needs no such venv: it is in the project's test pins.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${EMULATORS_VENV:-.venv-emulators}"
LOCK="requirements/emulators.lock"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/crucible" ] && [ -f "$VENV/.installed" ] && cmp -s "$LOCK" "$VENV/.installed"; then
    exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --pre: crucible-emulator is a pre-release; every version is pinned in the lock anyway.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --pre -r "$LOCK"
"$VENV/bin/crucible" --help >/dev/null
cp "$LOCK" "$VENV/.installed"
echo "crucible-emulator installed in $VENV"
