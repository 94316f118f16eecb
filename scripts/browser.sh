#!/usr/bin/env bash
# Install Debian's chromium when /usr/bin/chromium is missing: the HTML report test renders
# `trackline report --html` in it (headless). Idempotent; needs root (or sudo) for apt-get.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "browser.sh: not root and no sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "installing chromium (Debian package) for the HTML report test…" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
