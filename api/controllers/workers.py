"""Workers: GET /workers, GET /workers/{name}, POST /workers, DELETE /workers/{name}."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath
from pydantic import ValidationError

from api.auth import OPERATOR
from api.controllers.body import Service, json_body
from config.settings import WorkerSpec
from engine.errors import InvalidBody

__all__ = ["WorkerController"]


class WorkerController(Controller):
    tags = ["workers"]

    @get("/workers", opt={"scope": "read"}, summary="List workers by name")
    async def index(self, service: Service) -> list[dict[str, Any]]:
        return await service.workers()

    @get("/workers/{name:str}", opt={"scope": "read"}, summary="Get a worker")
    async def show(self, service: Service, name: FromPath[str]) -> dict[str, Any]:
        return await service.worker(name)

    @post("/workers", status_code=201, opt={"scope": OPERATOR},
          summary="Register a worker definition (an admin key of the default project)")
    async def create(self, request: Request, service: Service) -> Response[dict[str, Any]]:
        body = await json_body(request)
        try:
            spec = WorkerSpec.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            reason = first["msg"].removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                reason = "unknown field"
            raise InvalidBody(f"{where}: {reason}") from None
        return Response(await service.register_worker(spec, source="api"), status_code=201)

    @delete("/workers/{name:str}", status_code=200, opt={"scope": OPERATOR},
            summary="Remove a worker (an admin key of the default project)")
    async def remove(self, service: Service, name: FromPath[str]) -> dict[str, Any]:
        failed = await service.remove_worker(name)
        return {"removed": name, "failed_tasks": failed}
