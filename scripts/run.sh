#!/usr/bin/env bash
# Installs what is missing, builds, and starts the server on the embedded defaults
# (SQLite, local file storage, the built-in tiny model unless LONGCAT_WEIGHTS is set).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p longcat-cli
exec target/release/longcat serve "$@"
