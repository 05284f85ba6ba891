#!/usr/bin/env bash
# Every Rust test of the workspace (unit and integration test targets; the examples have no
# tests and are compiled by clippy's --all-targets check; there are no doctests). Extra
# arguments go to the runner. cargo-nextest, where it is installed, runs the test binaries
# side by side (most of the suite waits on child processes and sockets, not on the CPU);
# plain `cargo test` otherwise. Both skip #[ignore]d tests and go on after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${LONGCAT_NEXTEST:-1}" = "1" ] && cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
fi
exec cargo test --workspace --tests --no-fail-fast "$@"
