#!/usr/bin/env bash
# Installs what the build, the server and the test suite need on a fresh Debian machine.
# Idempotent: does nothing for what is already there.
set -euo pipefail

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The API tests drive the server with the official Python and JS fal clients.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: no Rust toolchain found. Install one (https://rustup.rs, Rust 1.85 or newer) and re-run." >&2
  exit 1
fi

# The safety checker's model (NudeNet 320n, AGPL-3.0, from the `nudenet` wheel on PyPI; never
# committed): the server checks content by default and refuses to start the check without it.
"$(dirname "$0")/fetch-safety-model.sh"
