"""``python -m scalems.local``: see :mod:`scalems.local`."""

import scalems.invocation
import scalems.local

scalems.invocation.run(
    parser=scalems.local.parser,
    executor_factory=scalems.local.executor_factory,
    configure=scalems.local.configuration,
)
