"""The workflow layer: task graph, fingerprints, result cache and task handles."""

from .manager import WorkflowManager
from .scope import get_scope
from .task import FINAL_STATES, Ensemble, ExecutableResult, Task, TaskState, as_completed, wait

__all__ = (
    "WorkflowManager",
    "get_scope",
    "Task",
    "Ensemble",
    "ExecutableResult",
    "TaskState",
    "FINAL_STATES",
    "wait",
    "as_completed",
)
