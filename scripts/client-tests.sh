#!/usr/bin/env bash
# API tests with the official fal clients: starts the real `longcat serve` on 127.0.0.1 with the
# built-in tiny model, a temporary database and storage, and one API key, then runs
# tests/clients/python_client_test.py (PyPI fal-client) and tests/clients/js_client_test.mjs
# (npm @fal-ai/client) against it, and tests/clients/playground_browser_test.py (the playground
# page in headless Chromium, driven by Selenium; skipped, loudly, where scripts/install-browser.sh
# cannot install chromium). Installs the clients on first use.
# Arguments pick tests (`python`, `js`, `browser`); none = all. Under scripts/with-s3.sh
# (LONGCAT_TEST_S3_STORAGE set) the server stores uploads and outputs in that S3 bucket
# instead of a local directory. LONGCAT_BIN names a prebuilt binary to test (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLIENTS="$ROOT/tests/clients"
TESTS="${*:-python js browser}"
want() { case " $TESTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# Clients, pinned (requirements.txt, package-lock.json).
scripts/install-test-venv.sh
scripts/fetch-safety-model.sh
if want js; then (cd "$CLIENTS" && npm ci --silent --no-audit --no-fund); fi

# LONGCAT_BIN: a `longcat` binary already built (scripts/test.sh passes the one its Rust tests
# built, so that nothing is rebuilt with another feature set); else it is built here.
if [ -n "${LONGCAT_BIN:-}" ]; then
  BIN="$LONGCAT_BIN"
else
  cargo build -q -p longcat-cli
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/longcat"
fi

WORK=$(mktemp -d)
SERVER_PID=""
CHAT_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$CHAT_PID" ]; then kill "$CHAT_PID" 2>/dev/null || true; wait "$CHAT_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ffmpeg -v error -f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1 "$WORK/input.png"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
KEY="client-test-key-$RANDOM$RANDOM"
STORAGE="$WORK/files"
if [ -n "${LONGCAT_TEST_S3_STORAGE:-}" ]; then
  STORAGE="${LONGCAT_TEST_S3_STORAGE%/}/client-tests"
fi
echo "client-tests: storage $STORAGE" >&2
# A loopback OpenAI-compatible endpoint for enable_prompt_expansion.
CHAT_PORT=$(free_port)
python3 "$CLIENTS/chat_endpoint.py" "$CHAT_PORT" &
CHAT_PID=$!

"$BIN" serve --host 127.0.0.1 --port "$PORT" --public-url "http://127.0.0.1:$PORT" \
  --database-url "sqlite://$WORK/longcat.db" --storage "$STORAGE" \
  --workers 1 --api-key "$KEY" --allow-private-image-urls \
  --prompt-expansion-url "http://127.0.0.1:$CHAT_PORT/v1" --prompt-expansion-model test-vl \
  --safety-model "$ROOT/data/models/nudenet-320n.onnx" --safety-labels FACE_FEMALE \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/server.log"; echo "server exited" >&2; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null

# The safety checker runs for real, with a policy flagging FACE_FEMALE so that scikit-image's
# astronaut portrait (from the venv) is flagged content (docs/safety.md).
SAFETY_IMAGE=$("$CLIENTS/.venv/bin/python" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"))')
export LONGCAT_URL="http://127.0.0.1:$PORT" FAL_KEY="$KEY" LONGCAT_TEST_IMAGE="$WORK/input.png" \
  LONGCAT_SAFETY_IMAGE="$SAFETY_IMAGE"
status=0
if want python; then
  timeout 900 "$CLIENTS/.venv/bin/python" "$CLIENTS/python_client_test.py" || status=1
fi
if want js; then
  (cd "$CLIENTS" && timeout 900 node js_client_test.mjs) || status=1
fi
if want browser; then
  if scripts/install-browser.sh; then
    # Screenshot: $LONGCAT_ARTIFACTS/playground.png (default target/playground-test/).
    timeout 900 "$CLIENTS/.venv/bin/python" "$CLIENTS/playground_browser_test.py" || status=1
  else
    echo "########################################################################" >&2
    echo "## SKIPPED: playground browser test (chromium + chromium-driver could ##" >&2
    echo "## not be installed; see scripts/install-browser.sh)                   ##" >&2
    echo "########################################################################" >&2
  fi
fi
if [ "$status" -ne 0 ]; then
  echo "---- server log (last 80 lines) ----"; tail -80 "$WORK/server.log"
fi
exit "$status"
