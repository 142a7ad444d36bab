"""``@scalems.app``: mark the entry point of a workflow script."""

from __future__ import annotations

__all__ = ("app", "ScriptEntryPoint")

import functools
import inspect
import typing

#: Entry points created while a script is being loaded (see scalems.invocation).
_registered: list = []


class ScriptEntryPoint:
    """A workflow script's entry point: a sync or async function decorated with ``@scalems.app``.

    Calling it runs the function; the execution module decides on which workflow.
    """

    def __init__(self, func: typing.Callable):
        if not callable(func):
            raise TypeError(f"@scalems.app must decorate a function, not {type(func).__name__}")
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        functools.update_wrapper(self, func)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __repr__(self):
        return f"<scalems.app {self.name}>"


def app(func: typing.Callable) -> ScriptEntryPoint:
    """Mark *func* as the workflow script's entry point. Exactly one per script.

    The function may be ``def`` or ``async def`` and takes no arguments; use
    ``sys.argv`` (or argparse) for the script's own options.
    """
    entry = ScriptEntryPoint(func)
    _registered.append(entry)
    return entry
