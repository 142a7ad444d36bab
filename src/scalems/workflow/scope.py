"""Which workflow the public API functions (``scalems.executable`` ...) add work to.

A context variable gives each thread / asyncio task its own current workflow.
Because notebook cells and helper threads do not share context, the most
recently opened workflow that is still open is the fallback.
"""

from __future__ import annotations

__all__ = ("get_scope", "push_scope", "pop_scope")

import contextvars
import threading

from scalems.exceptions import ContextError

_current: contextvars.ContextVar = contextvars.ContextVar("scalems_workflow", default=None)
_open: list = []
_lock = threading.Lock()


def get_scope():
    """The workflow manager that ``scalems.executable``/``scalems.submit`` add tasks to.

    Raises:
        ContextError: if no workflow is open (run the script with ``python -m scalems.local``
            or open one with ``scalems.local.workflow()``).
    """
    manager = _current.get()
    if manager is not None and not manager.closed:
        return manager
    with _lock:
        if _open:
            return _open[-1]
    raise ContextError(
        "No scalems workflow is active. Run the script with 'python -m scalems.local script.py', "
        "or open one in Python with 'with scalems.local.workflow() as wf:'."
    )


def push_scope(manager):
    with _lock:
        _open.append(manager)
    return _current.set(manager)


def pop_scope(manager, token):
    with _lock:
        if manager in _open:
            _open.remove(manager)
    try:
        _current.reset(token)
    except ValueError:  # reset from another context (e.g. a different notebook cell)
        _current.set(None)
