#!/usr/bin/env bash
# The whole test suite: installs what is missing, then checks formatting, runs every Rust test
# (unit, parity against $LONGCAT_GOLDENS (default ../shared/goldens), media, API, job store on
# SQLite and Postgres), clippy with warnings as errors,
# the golden check CLI, and the system tests (official fal clients, crash, workers, panic,
# scale-out on Postgres + S3).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's end is logged with the seconds since the start (CI keeps the suite < 30 min).
phase() { echo "test.sh: [$SECONDS s] $*" >&2; }
scripts/install-deps.sh
phase "dependencies installed"

GOLDENS="${LONGCAT_GOLDENS:-$(pwd)/../shared/goldens}"
export LONGCAT_GOLDENS="$GOLDENS"

# The tests' Python venv: the fal clients, and the `nudenet` package the safety checker's
# parity test compares against (it must run here, not skip: LONGCAT_REQUIRE_SAFETY_TESTS).
scripts/install-test-venv.sh
export LONGCAT_REQUIRE_SAFETY_TESTS=1
# The OpenAPI documents are checked by the venv's openapi-spec-validator: required here too.
export LONGCAT_REQUIRE_OPENAPI_VALIDATOR=1
# Every server and worker the tests start runs the real safety checker (on by default), also
# those started from another directory: the model by absolute path.
export LONGCAT_SAFETY_MODEL="$(pwd)/data/models/nudenet-320n.onnx"

phase "test venv ready"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
phase "fmt and clippy passed"
# Rust tests. The job store's Postgres tests need a server: the suite runs under a throwaway
# local one (scripts/with-postgres.sh installs and starts it). Where none can be started (exit
# 75) it runs without, and those tests skip themselves. LONGCAT_TEST_POSTGRES=0 skips them;
# a preset LONGCAT_TEST_POSTGRES_URL is used as is.
if [ "${LONGCAT_TEST_POSTGRES:-1}" = "1" ] && [ -z "${LONGCAT_TEST_POSTGRES_URL:-}" ]; then
  rc=0
  scripts/with-postgres.sh scripts/rust-tests.sh || rc=$?
  if [ "$rc" -eq 75 ]; then
    echo "test.sh: no local Postgres could be started; Postgres store tests will be skipped" >&2
    scripts/rust-tests.sh
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
else
  scripts/rust-tests.sh
fi
phase "Rust tests passed"
# The binary the Rust tests built (with the workspace's test feature set): the goldens CLI,
# the client tests and the system tests all run it, so nothing is built again.
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$(pwd)/$TARGET_DIR" ;; esac
export LONGCAT_BIN="$TARGET_DIR/debug/longcat"
# The storage scenarios and the two-server upload tests again on a real S3-compatible server
# (scripts/with-s3.sh starts moto's server with a fresh bucket; the workspace run above covered
# the local directory and skipped the S3 runs). LONGCAT_TEST_S3=0 skips this.
if [ "${LONGCAT_TEST_S3:-1}" = "1" ]; then
  rc=0
  # Selected by test target over the whole workspace: the same feature set as the run above,
  # so nothing is rebuilt (`-p` would resolve features per package and rebuild dependents).
  scripts/with-s3.sh scripts/rust-tests.sh --test backends --test scaleout || rc=$?
  if [ "$rc" -eq 75 ]; then
    echo "test.sh: SKIPPED the storage and upload tests on S3: no local S3 server (moto) could be started" >&2
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
fi
phase "S3 storage tests passed"
"$LONGCAT_BIN" goldens check "$GOLDENS"
phase "goldens passed"

# System tests against the real server on 127.0.0.1 with the built-in tiny model: the official
# Python and JS fal clients, the playground page in headless Chromium (skipped with a banner
# where no browser can be installed), a kill -9 crash/restart test, separate `longcat worker`
# processes sharing the job database (webhook signatures checked against the server's JWKS),
# and a job that panics inside the model followed by one that completes.
scripts/client-tests.sh
phase "client tests passed"
# The same client tests with the server's uploads and outputs in an S3 bucket (both upload
# protocols, results and files served from the bucket); skipped loudly where no S3 server can
# be started.
rc=0
scripts/with-s3.sh scripts/client-tests.sh python js || rc=$?
if [ "$rc" -eq 75 ]; then
  echo "test.sh: SKIPPED the client tests on S3: no local S3 server (moto) could be started" >&2
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
phase "client tests on S3 passed"
python3 tests/system/crash_test.py "$LONGCAT_BIN"
# The worker test verifies webhook signatures (Ed25519): it runs in the clients' venv, which
# scripts/client-tests.sh installed from tests/clients/requirements.txt (cryptography).
tests/clients/.venv/bin/python tests/system/worker_test.py "$LONGCAT_BIN"
python3 tests/system/panic_test.py "$LONGCAT_BIN"
# Scale-out (docs/deploy.md): two `serve --workers 0` behind a loopback balancer and two
# `worker` processes on one Postgres and one S3 bucket; the fal client uploads through A (and
# in parts across both), submits through B, polls A; a worker is killed with kill -9 mid-job.
# Skipped loudly where Postgres or the S3 server cannot be started (exit 75).
rc=0
scripts/with-postgres.sh scripts/with-s3.sh tests/clients/.venv/bin/python \
  tests/system/scaleout_test.py "$LONGCAT_BIN" || rc=$?
if [ "$rc" -eq 75 ]; then
  echo "test.sh: SKIPPED the scale-out system test: no local Postgres or S3 server could be started" >&2
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
phase "system tests passed: the whole suite"
