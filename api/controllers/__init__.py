"""One controller per area."""

from api.controllers.health import HealthController
from api.controllers.tasks import TaskController
from api.controllers.workers import WorkerController

__all__ = ["HealthController", "TaskController", "WorkerController"]
