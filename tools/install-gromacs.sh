#!/usr/bin/env bash
# Install GROMACS (gmx) from Debian's packages when it is missing, for examples/gromacs and its tests.
#
#   bash tools/install-gromacs.sh      # as root; does nothing when gmx is already on PATH
#
# Not as root, or without apt-get, it installs nothing and says how to get GROMACS; the
# GROMACS tests then skip, saying why. Exits non-zero only when an install was tried and failed.
# Sourcing it defines install_gromacs without running it.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

install_gromacs() {
    ensure_command install-gromacs gmx gromacs \
        "GROMACS is not installed (apt-get install gromacs, conda install -c conda-forge gromacs, or module load gromacs)." \
        sh -c "gmx --version | grep -m1 'GROMACS version'"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    install_gromacs
fi
