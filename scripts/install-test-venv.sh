#!/usr/bin/env bash
# The Python venv of the tests (tests/clients/.venv): the official fal client for the client
# tests, cryptography for the webhook test, and the `nudenet` package with scikit-image's
# photographs for the safety checker's parity test, all pinned in tests/clients/requirements.txt.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=tests/clients/.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -r tests/clients/requirements.txt
