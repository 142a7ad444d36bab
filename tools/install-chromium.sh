#!/usr/bin/env bash
# Install Debian's chromium when it is missing, for the headless-browser test of python -m scalems report
# (tests/test_report_browser.py).
#
#   bash tools/install-chromium.sh      # as root; does nothing when chromium is already on PATH
#
# Not as root, or without apt-get, it installs nothing and says so; the browser tests then skip,
# saying why. Exits non-zero only when an install was tried and failed.
install_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install-chromium: chromium is not on PATH and this is not root with apt-get: the browser tests" \
             "will be skipped (apt-get install chromium)." >&2
        return 0
    fi
    local start=$SECONDS
    echo "install-chromium: installing Debian's chromium package" >&2
    # Wait for another apt/dpkg run (another install script) to finish instead of failing on its lock.
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq &&
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends chromium >/dev/null || {
        echo "install-chromium: apt-get could not install chromium" >&2
        return 1
    }
    command -v chromium >/dev/null 2>&1 || { echo "install-chromium: chromium installed but not on PATH" >&2; return 1; }
    echo "install-chromium: $(chromium --version 2>/dev/null) in $((SECONDS - start)) s" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    install_chromium
fi
