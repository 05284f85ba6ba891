#!/usr/bin/env bash
# Runs a command with a throwaway local S3-compatible server (moto's server mode):
#
#   scripts/with-s3.sh cargo test -p longcat-storage
#
# Starts `moto.server` on 127.0.0.1 on a free port, creates a fresh bucket, exports the
# settings the storage crate reads (object_store's `AWS_*` variables: endpoint, keys, region,
# plain http, path-style requests) plus LONGCAT_TEST_S3_STORAGE=s3://BUCKET (the storage
# target tests use), runs the command, then stops the server (its data lives in memory).
# Uses the system Python's moto when it has the server extras, else installs `moto[server]`
# (tests/s3/requirements.txt) into tests/s3/.venv. Exits 75 (EX_TEMPFAIL) without running the
# command when no server can be started, so callers can tell "no S3 here" from a failing
# command. Why moto: docs/deploy.md#the-s3-server-of-the-tests.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
# Any failure while setting the server up means "no S3 here".
trap 'echo "with-s3: setup failed (line $LINENO)" >&2; exit 75' ERR

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/tests/s3/.venv"

has_moto() { "$1" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; }

PY=""
if [ -x "$VENV/bin/python" ] && has_moto "$VENV/bin/python"; then
  PY="$VENV/bin/python"
elif command -v python3 >/dev/null 2>&1 && has_moto python3; then
  PY=python3
elif [ "${LONGCAT_NO_INSTALL:-0}" != "1" ] && command -v python3 >/dev/null 2>&1; then
  echo "with-s3: installing moto[server] into tests/s3/.venv" >&2
  if python3 -m venv "$VENV" >/dev/null 2>&1 &&
    timeout 600 "$VENV/bin/pip" install -q -r "$ROOT/tests/s3/requirements.txt" >/dev/null 2>&1 &&
    has_moto "$VENV/bin/python"; then
    PY="$VENV/bin/python"
  fi
fi
if [ -z "$PY" ]; then
  echo "with-s3: no S3 server (moto) found and none could be installed" >&2
  exit 75
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/longcat-s3.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BUCKET="longcat-test-$(date +%s)-$RANDOM"

"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Wait for the server, then create the bucket (moto accepts the unsigned CreateBucket).
if ! python3 - "$PORT" "$BUCKET" <<'EOF'; then
import sys, time, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
for _ in range(120):
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=5).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.25)
sys.exit(1)
EOF
  echo "with-s3: the server did not start:" >&2
  cat "$WORK/server.log" >&2 || true
  exit 75
fi

unset AWS_SESSION_TOKEN AWS_PROFILE AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID="longcat-test"
export AWS_SECRET_ACCESS_KEY="longcat-test-secret"
export AWS_DEFAULT_REGION="us-east-1" AWS_REGION="us-east-1"
export AWS_ALLOW_HTTP="true"
export AWS_VIRTUAL_HOSTED_STYLE_REQUEST="false"
export LONGCAT_TEST_S3_STORAGE="s3://$BUCKET"
echo "with-s3: moto $("$PY" -c 'import moto; print(moto.__version__)') at $AWS_ENDPOINT_URL, bucket $BUCKET" >&2
trap - ERR
set +e
"$@"
status=$?
set -e
exit $status
