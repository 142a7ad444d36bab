"""``python -m scalems.radical``: see :mod:`scalems.radical`."""

import scalems.invocation
import scalems.radical

scalems.invocation.run(
    parser=scalems.radical.parser,
    backend_factory=scalems.radical.executor_factory,
    configure=scalems.radical.configuration,
)
