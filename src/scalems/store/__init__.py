"""The store of a work directory: content-addressed files and the task record.

Re-running a script in the same work directory finds finished tasks here
instead of redoing them. See :mod:`scalems.store.filestore` for the layout and
the crash-consistency argument; one concept per module:

- :mod:`~scalems.store.files`: content-addressed file area (sha256).
- :mod:`~scalems.store.record`: SQLite task record, batched commits.
- :mod:`~scalems.store.lock`: one owning process per work directory.
"""

from .files import FileNotInStoreError, FileRecord, check_digest
from .filestore import LAYOUT, FileStore
from .record import COMPLETE, SCHEMA_VERSION, TaskRecord

__all__ = (
    "FileStore",
    "FileRecord",
    "TaskRecord",
    "FileNotInStoreError",
    "LAYOUT",
    "SCHEMA_VERSION",
    "COMPLETE",
    "check_digest",
)
