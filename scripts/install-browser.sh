#!/usr/bin/env bash
# Installs Debian's `chromium` and `chromium-driver` for the playground browser test
# (tests/clients/playground_browser_test.py); nothing else needs them, so scripts/install-deps.sh
# does not. Exits 0 when both are there afterwards (or CHROMIUM and CHROMEDRIVER name
# executables), non-zero when they cannot be installed (no apt, no root or sudo, no network,
# or LONGCAT_BROWSER_TESTS=0): the caller then skips the test and says so.
set -uo pipefail
[ "${LONGCAT_BROWSER_TESTS:-1}" = "0" ] && { echo "install-browser: LONGCAT_BROWSER_TESTS=0" >&2; exit 1; }
if [ -n "${CHROMIUM:-}" ] && [ -x "${CHROMIUM:-}" ] && [ -n "${CHROMEDRIVER:-}" ] && [ -x "${CHROMEDRIVER:-}" ]; then
  exit 0
fi
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "install-browser: no apt-get" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-browser: not root and no passwordless sudo" >&2; exit 1
  fi
fi
echo "installing Debian packages: chromium chromium-driver (playground browser test)"
$SUDO apt-get update -qq || exit 1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null || exit 1
have
