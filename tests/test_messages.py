"""scalems.messages: commands survive the msgpack/JSON trip to the Raptor master.

The commands live in scalems.radical.raptor.messages (only Raptor uses them);
scalems.messages, their public name, re-exports them and so needs radical.pilot.
"""

import json

import pytest

pytest.importorskip("radical.pilot")

from scalems.exceptions import ProtocolError  # noqa: E402
from scalems.messages import AddItem, Command, HelloCommand, ResizeWorkers, StopCommand  # noqa: E402

COMMANDS = [
    HelloCommand(),
    StopCommand(),
    ResizeWorkers(3),
    AddItem(encoded_item=json.dumps({"call": "{}", "label": "abc"})),
]


def test_public_name_is_the_raptor_module():
    import scalems.messages
    import scalems.radical.raptor.messages as raptor_messages

    for name in ("CPI_MESSAGE", "AddItem", "Command", "HelloCommand", "ResizeWorkers", "StopCommand"):
        assert getattr(scalems.messages, name) is getattr(raptor_messages, name)
    assert scalems.messages.Command.decode(AddItem("{}").encode()) == raptor_messages.AddItem("{}")


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_round_trip(command):
    encoded = command.encode()
    assert isinstance(encoded, dict)
    decoded = Command.decode(encoded)
    assert type(decoded) is type(command)
    assert decoded == command
    assert Command.decode(json.dumps(encoded)) == command


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_msgpack_round_trip(command):
    msgpack = pytest.importorskip("msgpack")
    assert Command.decode(msgpack.unpackb(msgpack.packb(command.encode()))) == command


def test_add_item_keeps_its_payload():
    item = AddItem('{"x": 1}')
    assert Command.decode(item.encode()).encoded_item == '{"x": 1}'
    assert AddItem.decode(item.encode()) == item
    assert "AddItem" in repr(item) and '{"x": 1}' in repr(item)
    assert item != AddItem('{"x": 2}')
    assert HelloCommand() != StopCommand()
    with pytest.raises(TypeError, match="str"):
        AddItem(b"bytes")


def test_unknown_command_names_it():
    with pytest.raises(ProtocolError, match="FlyCommand"):
        Command.decode({"command": "FlyCommand"})


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        [1, 2],
        {"no": "type"},
        {"command": "AddItem"},
        {"command": "AddItem", "encoded_item": 5},
        {"command": "HelloCommand", "extra": 1},
    ],
)
def test_malformed_messages(bad):
    with pytest.raises(ProtocolError):
        Command.decode(bad)


def test_decode_on_subclass_checks_kind():
    with pytest.raises(ProtocolError, match="AddItem"):
        AddItem.decode(HelloCommand().encode())


def test_resize_takes_a_count_of_zero_or_more():
    assert Command.decode(ResizeWorkers(0).encode()) == ResizeWorkers(0)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(TypeError, match="count"):
            ResizeWorkers(bad)
    with pytest.raises(ProtocolError, match="ResizeWorkers"):
        Command.decode({"command": "ResizeWorkers", "count": -2})


def test_messages_of_older_and_newer_peers():
    # What an older client sends still decodes: the command set only grew.
    assert Command.decode({"command": "HelloCommand"}) == HelloCommand()
    assert Command.decode({"command": "StopCommand"}) == StopCommand()
    # A Hello answer: an older master's lacks the worker count, a newer one's may carry more fields.
    from scalems.radical.raptor.config import BackendVersion

    old = BackendVersion.from_dict({"name": "scalems.radical.raptor", "version": "1.0"})
    assert old.workers is None and old.version == "1.0"
    new = BackendVersion.from_dict({"name": "scalems.radical.raptor", "version": "9", "workers": 3, "gpus": 1})
    assert new.workers == 3
