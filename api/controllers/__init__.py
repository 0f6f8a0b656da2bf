"""One controller per area."""

from api.controllers.events import EventController
from api.controllers.health import HealthController
from api.controllers.tasks import TaskController
from api.controllers.workers import WorkerController

__all__ = ["EventController", "HealthController", "TaskController", "WorkerController"]
