"""``scalems.messages``: the public name (from the SCALE-MS seeds) of the Raptor command messages.

They live in :mod:`scalems.radical.raptor.messages`, next to the only code that
uses them; importing this module therefore needs ``radical.pilot``
(``pip install 'scalems[radical]'``).
"""

from scalems.radical.raptor.messages import (
    CPI_MESSAGE,
    AddItem,
    Command,
    HelloCommand,
    ResizeWorkers,
    StopCommand,
)

__all__ = ("CPI_MESSAGE", "AddItem", "Command", "HelloCommand", "ResizeWorkers", "StopCommand")
