#!/usr/bin/env bash
# Install GROMACS (gmx) from Debian's packages when it is missing, for examples/gromacs and its tests.
#
#   bash tools/install-gromacs.sh      # as root; does nothing when gmx is already on PATH
#
# Not as root, or without apt-get, it installs nothing and says how to get GROMACS; the
# GROMACS tests then skip, saying why. Exits non-zero only when an install was tried and failed.
# Sourcing it defines install_gromacs without running it.
install_gromacs() {
    if command -v gmx >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install-gromacs: gmx is not on PATH and this is not root with apt-get: GROMACS is not installed" \
             "(apt-get install gromacs, conda install -c conda-forge gromacs, or module load gromacs)." >&2
        return 0
    fi
    local start=$SECONDS
    echo "install-gromacs: installing Debian's gromacs package" >&2
    # Wait for another apt/dpkg run to finish instead of failing on its lock.
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq &&
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends gromacs >/dev/null || {
        echo "install-gromacs: apt-get could not install gromacs" >&2
        return 1
    }
    command -v gmx >/dev/null 2>&1 || { echo "install-gromacs: gromacs installed but gmx is not on PATH" >&2; return 1; }
    echo "install-gromacs: $(gmx --version 2>/dev/null | grep -m1 'GROMACS version' | tr -s ' ') in $((SECONDS - start)) s" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    install_gromacs
fi
