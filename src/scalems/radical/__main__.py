"""``python -m scalems.radical``: see :mod:`scalems.radical`."""

import scalems.invocation
import scalems.radical


def _backend_factory(manager, params):
    # Looked up when the workflow starts, so that --help works without radical.pilot installed.
    return scalems.radical.executor_factory(manager, params)


scalems.invocation.run(
    parser=scalems.radical.parser,
    backend_factory=_backend_factory,
    configure=scalems.radical.configuration,
)
