"""The FastAPI app the router serves, and how errors become JSON responses.

Every error is ``{"error": code, "message": ..., "field": ...}`` with the status of the
project exception (see :mod:`serve_app.errors`); request validation errors name the field in
the user's notation (``features[0][3]``), never a bare 500 with a traceback.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from serve_app.config import format_location
from serve_app.errors import BanditServeError, InvalidRequest, PayloadTooLarge
from serve_app.schemas import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 422, 503)
}
BodyT = TypeVar("BodyT", bound=BaseModel)

app = FastAPI(
    title="bandit-serve",
    summary="A/B tests and multi-armed bandits for ML models on Ray Serve",
    version="0.1.0",
)


@app.exception_handler(BanditServeError)
async def _project_error(_request: Request, error: BanditServeError) -> JSONResponse:
    headers = {"Retry-After": "1"} if error.status == 503 else None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for problem in error.errors():
        location = tuple(part for part in problem["loc"] if part != "body")
        if problem["type"] == "json_invalid":
            problems.append({"field": "body", "message": f"not valid JSON: {problem['msg']}"})
            continue
        field = format_location(location) if location else "body"
        message = problem["msg"]
        if problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append({"field": field, "message": message})
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    body = InvalidRequest(f"{first['field']}: {first['message']}", field=first["field"])
    return JSONResponse({**body.to_json(), "problems": problems}, status_code=422)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for endpoints that read and validate the body themselves."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


async def parse_body(request: Request, model: type[BodyT], limit: int) -> BodyT:
    """Read at most ``limit`` bytes and validate them as ``model``.

    Raises:
        PayloadTooLarge: the body is over the limit (413), before it is all read.
        RequestValidationError: turned into a 422 naming the field.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", field="body")
        chunks.append(chunk)
    try:
        return model.model_validate_json(b"".join(chunks))
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
