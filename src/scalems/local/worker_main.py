"""Entry point of a warm worker process: ``python -m scalems.local.worker_main READ_FD WRITE_FD``.

Reads length-prefixed call records (:mod:`scalems.call` JSON), executes each
with :func:`scalems.call.execute`, writes back the result record. Exits on
end of input. Kept free of the rest of scalems so it starts fast.
"""

import json
import os
import signal
import struct
import sys

_HEADER = struct.Struct(">I")


class _Reader:
    """Frames from a pipe, reading whatever has arrived: a batch of queued calls costs one read."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()

    def next_frame(self) -> bytes:
        buffer = self.buffer
        while True:
            if len(buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer)
                end = _HEADER.size + size
                if len(buffer) >= end:
                    frame = bytes(buffer[_HEADER.size : end])
                    del buffer[:end]
                    return frame
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError
            buffer += chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = int(argv[0]), int(argv[1])
    extra = os.environ.pop("SCALEMS_WORKER_SYS_PATH", None)
    if extra:
        for entry in json.loads(extra):
            if entry not in sys.path:
                sys.path.append(entry)
    # Ctrl-C in the terminal reaches the whole process group; the parent decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from scalems.call import execute

    reader = _Reader(read_fd)
    while True:
        try:
            record = reader.next_frame().decode("utf-8")
        except EOFError:
            return 0
        reply = execute(record).encode("utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(write_fd, _HEADER.pack(len(reply)) + reply)


if __name__ == "__main__":
    sys.exit(main())
