"""Tasks: mecha's POST /task, GET /task/{id}, GET /tasks, plus POST /task/{id}/cancel."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from api.auth import principal_of
from api.controllers.body import Service, int_param, json_body

__all__ = ["TaskController"]


class TaskController(Controller):
    tags = ["tasks"]

    @post("/task", status_code=202, opt={"scope": "submit"}, summary="Submit a task")
    async def submit(self, request: Request, service: Service) -> Response[dict[str, Any]]:
        task, created = await service.submit(principal_of(request).project, await json_body(request))
        headers = {} if created else {"X-Idempotent-Replay": "true"}
        return Response(task.to_public(), status_code=202, headers=headers)

    @get("/task/{task_id:str}", opt={"scope": "read"}, summary="Get a task")
    async def show(self, request: Request, service: Service, task_id: FromPath[str]) -> dict[str, Any]:
        return (await service.get(principal_of(request).project, task_id)).to_public()

    @post("/task/{task_id:str}/cancel", status_code=200, opt={"scope": "submit"}, summary="Cancel a task")
    async def cancel(self, request: Request, service: Service, task_id: FromPath[str]) -> dict[str, Any]:
        return (await service.cancel(principal_of(request).project, task_id)).to_public()

    @get("/tasks", opt={"scope": "read"}, summary="List tasks, newest first")
    async def index(self, request: Request, service: Service) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        page, cursor = await service.list(
            principal_of(request).project, state=q.get("state") or None, worker=q.get("worker") or None,
            limit=int_param(q.get("limit"), "limit"), cursor=q.get("cursor") or None)
        headers = {"X-Next-Cursor": cursor} if cursor else {}
        return Response([t.to_public() for t in page], headers=headers)
