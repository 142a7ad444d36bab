"""``python -m scalems.local``: see :mod:`scalems.local`."""

import scalems.invocation
import scalems.local

scalems.invocation.run(
    parser=scalems.local.parser,
    backend_factory=scalems.local.backend_factory,
    configure=scalems.local.configuration,
)
