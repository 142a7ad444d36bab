"""scalems on RADICAL-Pilot Raptor: a master task, its pool of workers, and the client that drives them.

Function tasks through Raptor avoid one RP task (and one Python start-up) per
call: long-lived workers run many calls. The pieces:

* :mod:`.messages` — the commands the client sends the master
  (:class:`~.messages.HelloCommand`, :class:`~.messages.StopCommand`,
  :class:`~.messages.ResizeWorkers`, :class:`~.messages.AddItem`; public name
  :mod:`scalems.messages`);
* :mod:`.config` — plain-data records shared by all three sides
  (:class:`MasterTaskConfiguration`, :func:`master_input`, ...);
* :mod:`.master` — :class:`ScaleMSMaster` and the ``scalems_rp_master``
  console script (:func:`master`);
* :mod:`.pool` — the master's worker pool: backlog, hand-out, replacement of
  dead workers;
* :mod:`.worker` — :class:`ScaleMSWorker`, which runs :mod:`scalems.call`
  records and only ever returns strings;
* :mod:`.client` — :class:`RaptorClient`, used by the RP execution backend.

Importing this package needs ``radical.pilot`` (``pip install 'scalems[radical]'``).
"""

from __future__ import annotations

try:
    import radical.pilot  # noqa: F401
except ImportError as _err:  # pragma: no cover - depends on the installation
    from scalems.exceptions import MissingDependencyError

    raise MissingDependencyError("radical.pilot", "radical", "for the RADICAL-Pilot Raptor backend") from _err

from scalems.exceptions import SoftwareCompatibilityError

from .config import (
    CPI_MESSAGE,
    BackendVersion,
    ClientWorkerRequirements,
    MasterTaskConfiguration,
    RaptorWorkerConfig,
    ScalemsRaptorWorkItem,
    TaskDictionary,
    WorkerDescription,
    backend_version,
    master_input,
    master_script,
    worker_description,
    worker_requirements,
)
from .master import CpiAddItem, CpiCommand, CpiHello, CpiResize, CpiStop, ScaleMSMaster, master, parser
from .worker import ScaleMSWorker
from .client import RaptorClient

__all__ = (
    "CPI_MESSAGE",
    "BackendVersion",
    "backend_version",
    "ClientWorkerRequirements",
    "MasterTaskConfiguration",
    "master_script",
    "master_input",
    "master",
    "parser",
    "worker_requirements",
    "worker_description",
    "SoftwareCompatibilityError",
    "ScaleMSWorker",
    "ScaleMSMaster",
    "ScalemsRaptorWorkItem",
    "TaskDictionary",
    "WorkerDescription",
    "RaptorWorkerConfig",
    "CpiCommand",
    "CpiHello",
    "CpiStop",
    "CpiAddItem",
    "CpiResize",
    "RaptorClient",
)
