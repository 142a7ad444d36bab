#!/usr/bin/env bash
# Install Debian's chromium when it is missing, for the headless-browser test of python -m scalems report
# (tests/test_report_browser.py).
#
#   bash tools/install-chromium.sh      # as root; does nothing when chromium is already on PATH
#
# Not as root, or without apt-get, it installs nothing and says so; the browser tests then skip,
# saying why. Exits non-zero only when an install was tried and failed.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

install_chromium() {
    ensure_command install-chromium chromium chromium \
        "the browser tests will be skipped (apt-get install chromium)." chromium --version
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    install_chromium
fi
