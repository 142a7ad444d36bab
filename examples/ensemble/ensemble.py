"""An ensemble: the same program with different inputs, then one analysis over all members.

    python -m scalems.local --cores 2 examples/ensemble/ensemble.py [SIZE]

Each member "simulates" by writing a value derived from its seed to ``energy.dat``;
a function task collects all members' files and returns the lowest energy.
"""

import sys

import scalems


def lowest_energy(paths) -> tuple:
    """(seed index, energy) of the member with the lowest energy."""
    energies = [float(open(path).read()) for path in paths]
    best = min(range(len(energies)), key=energies.__getitem__)
    return best, energies[best]


@scalems.app
def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    members = scalems.executable(
        [
            ["sh", "-c", f'echo $(( ({seed} * 7919) % 101 - 50 )) > "$1"', "member", scalems.output_file("energy.dat")]
            for seed in range(size)
        ],
        label="member",
    )
    best = scalems.submit(lowest_energy, [member.file["energy.dat"] for member in members])
    index, energy = best.result()
    print(f"{len(members)} members; lowest energy {energy} from member {index}")
