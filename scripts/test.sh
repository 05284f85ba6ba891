#!/usr/bin/env bash
# The whole test suite: installs what is missing, then checks formatting, runs every Rust test
# (unit, parity against ../shared/goldens, media, API) and the golden check CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

GOLDENS="${LONGCAT_GOLDENS:-$(pwd)/../shared/goldens}"
export LONGCAT_GOLDENS="$GOLDENS"

cargo fmt --all -- --check
cargo test --workspace --no-fail-fast
cargo run -q -p longcat-cli -- goldens check "$GOLDENS"
