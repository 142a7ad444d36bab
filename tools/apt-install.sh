#!/usr/bin/env bash
# Shared by the install-*.sh scripts: install a Debian package when its command is missing.
#
#   source tools/apt-install.sh
#   ensure_command NAME COMMAND PACKAGE HINT VERSION-COMMAND...
#
# Does nothing when COMMAND is on PATH. Not as root, or without apt-get, it installs nothing and
# prints HINT (what the user can do; the tests that need COMMAND then skip, saying why). As root it
# installs PACKAGE without recommends, waiting for another apt/dpkg run to release its lock instead
# of failing on it, and reports VERSION-COMMAND's first line and the time taken. Returns non-zero
# only when an install was tried and failed.
ensure_command() {
    local name=$1 command=$2 package=$3 hint=$4
    shift 4
    if command -v "$command" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$name: $command is not on PATH and this is not root with apt-get: $hint" >&2
        return 0
    fi
    local start=$SECONDS
    echo "$name: installing Debian's $package package" >&2
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq &&
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "$package" >/dev/null || {
        echo "$name: apt-get could not install $package" >&2
        return 1
    }
    command -v "$command" >/dev/null 2>&1 || { echo "$name: $package installed but $command is not on PATH" >&2; return 1; }
    echo "$name: $("$@" 2>/dev/null | head -n 1 | tr -s ' ') in $((SECONDS - start)) s" >&2
}
