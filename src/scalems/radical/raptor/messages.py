"""Control messages between the scalems client and its RADICAL Raptor master.

The client does not submit scalems work to RADICAL-Pilot as ordinary tasks.
It submits small *command* tasks to the scalems Raptor master: the task's
``mode`` is :data:`CPI_MESSAGE` (``"scalems.cpi"``) and its ``metadata`` holds
:meth:`Command.encode` of one of the classes below. The master recognises the
mode, rebuilds the command with :meth:`Command.decode`, and acts on it (say
hello, stop, resize its worker pool, or turn an encoded work item into tasks
for its workers).

A master that does not know a command (an older scalems) fails that command's
task with a :class:`~scalems.exceptions.ProtocolError` naming it; it keeps
serving the others, so a newer client can fall back.

RADICAL-Pilot ships ``metadata`` through msgpack, so an encoded command is a
plain ``dict`` of strings, numbers, lists and dicts, and nothing else.

:mod:`scalems.messages` (the public name in the SCALE-MS seeds) re-exports this module.
"""

from __future__ import annotations

__all__ = ("CPI_MESSAGE", "AddItem", "Command", "HelloCommand", "ResizeWorkers", "StopCommand")

import dataclasses
import json
import typing

from scalems.exceptions import ProtocolError

#: ``TaskDescription.mode`` of tasks that carry a scalems command for the master.
CPI_MESSAGE = "scalems.cpi"

# Key of the encoded dict that names the command class; the other keys are its fields.
_TYPE_KEY = "command"

_registry: dict[str, type[Command]] = {}


def _check_plain(value, where: str):
    """Refuse values msgpack (and JSON) would not carry unchanged, before they reach RP."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; command fields must be plain data")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; command fields must be plain data (str, int, ...)")


@dataclasses.dataclass(frozen=True)
class Command:
    """Base of all commands; subclasses are frozen dataclasses of plain-data fields.

    Each subclass is registered under its ``__qualname__``, which is what
    :meth:`encode` writes and :meth:`decode` looks up, so both ends only need
    to import this module.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _registry[cls.__qualname__] = cls

    def encode(self) -> dict:
        """Return a msgpack- and JSON-safe ``dict`` that :meth:`decode` turns back into this command."""
        encoded = {_TYPE_KEY: type(self).__qualname__}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _check_plain(value, f"{type(self).__qualname__}.{field.name}")
            encoded[field.name] = value
        return encoded

    @classmethod
    def decode(cls, obj: dict | str | bytes) -> Command:
        """Rebuild a command from :meth:`encode` output (a dict, or its JSON text).

        Called on a subclass, also checks that the command is of that kind.

        Raises:
            ProtocolError: *obj* is not an encoded command, names an unknown command,
                or its fields do not fit.
        """
        if isinstance(obj, (str, bytes, bytearray)):
            try:
                obj = json.loads(obj)
            except ValueError as err:
                raise ProtocolError(f"Not an encoded scalems command (invalid JSON: {err})") from err
        if not isinstance(obj, typing.Mapping):
            raise ProtocolError(f"Not an encoded scalems command: expected a dict, got {type(obj).__name__}")
        fields = dict(obj)
        name = fields.pop(_TYPE_KEY, None)
        if not isinstance(name, str):
            raise ProtocolError(f"Not an encoded scalems command: no {_TYPE_KEY!r} key in {obj!r}")
        command_class = _registry.get(name)
        if command_class is None:
            raise ProtocolError(
                f"Unknown scalems command type {name!r}; known: {', '.join(sorted(_registry))}"
            )
        if not issubclass(command_class, cls):
            raise ProtocolError(f"Expected a {cls.__qualname__} command, got {name!r}")
        expected = {field.name for field in dataclasses.fields(command_class)}
        if set(fields) != expected:
            raise ProtocolError(
                f"Fields of encoded {name} command do not match: got {sorted(fields)}, expected {sorted(expected)}"
            )
        try:
            return command_class(**fields)
        except TypeError as err:  # a field of the wrong type (see AddItem.__post_init__)
            raise ProtocolError(f"Invalid encoded {name} command: {err}") from err


@dataclasses.dataclass(frozen=True)
class HelloCommand(Command):
    """Ask the master to answer, to show that it is up and reading commands."""


@dataclasses.dataclass(frozen=True)
class StopCommand(Command):
    """Ask the master to finish its queued work and shut down its workers."""


@dataclasses.dataclass(frozen=True)
class AddItem(Command):
    """Hand the master one work item to run on its workers.

    Attributes:
        encoded_item: the item as JSON text; the master decodes it, the message layer does not.
    """

    encoded_item: str

    def __post_init__(self):
        if not isinstance(self.encoded_item, str):
            raise TypeError(f"AddItem.encoded_item must be a str, got {type(self.encoded_item).__name__}")


@dataclasses.dataclass(frozen=True)
class ResizeWorkers(Command):
    """Ask the master to run *count* workers from now on.

    The master submits workers to grow; to shrink it stops handing out work
    until enough workers are idle, then ends those (a worker is never ended
    while it holds a call). ``count == 0`` leaves the master alone, holding
    queued calls until the pool grows again.

    Attributes:
        count: wanted number of workers (``>= 0``).
    """

    count: int

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise TypeError(f"ResizeWorkers.count must be an integer >= 0, got {self.count!r}")
