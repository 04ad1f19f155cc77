#!/usr/bin/env bash
# Debian packages the tests need: chromium, for the demo's real-browser test (Playwright drives
# /usr/bin/chromium; it never downloads a browser of its own). Installed only when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get here; install Chromium so that /usr/bin/chromium exists," \
       "or the browser test will be skipped." >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_system_deps: chromium is missing and this is not root. Run:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
  echo "(until then the browser test is skipped)." >&2
  exit 0
fi
echo "install_system_deps: installing Debian's chromium (for the browser test) ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
