"""The next-best-action HTTP service (FastAPI): the production face of an exported policy.

Endpoints: ``POST /v1/decide`` (one account), ``POST /v1/decide/batch`` (many), ``GET /v1/policy``
(what is being served), ``GET /healthz`` (the process is up), ``GET /readyz`` (the artifact is
loaded), and the OpenAPI spec at ``/openapi.json``.

Bad input never produces a 500: invalid bodies get 422 naming the field, bodies over the size
limit 413, and a missing or wrong bearer token 401 when a token is configured. Every decision is
written as one JSON line to the decision log (request id, policy id, view hash, decision,
propensity, time); the log is flushed on a clean shutdown.
"""

from __future__ import annotations

import gc
import hmac
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies.hashing import view_hash
from policies.records import FIELDS, LAST_OUTCOME_NAMES, RecordError, parse_record, views_from_rows
from policies.runtime import Decision, DecisionFunction, load
from policies.schema import CONTACT_CHANNEL_NAMES, PRODUCT_NAMES

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 5_000

_Channel = Literal["sms", "email", "push", "messenger", "letter", "call"]
_TYPES: dict[str, Any] = {
    "float": float,
    "int": int,
    "bool": bool,
    "days_since": int | None,
    "channels": list[_Channel],
    "counts": dict[_Channel, Annotated[int, Field(ge=0, le=10_000)]],
    "product": Literal[PRODUCT_NAMES],  # type: ignore[valid-type]
    "outcome": Literal[LAST_OUTCOME_NAMES],  # type: ignore[valid-type]
}


def _account_model() -> type[BaseModel]:
    """The request schema of one account, generated from ``policies.records.FIELDS`` (one place)."""
    fields: dict[str, Any] = {"account_id": (str | None, Field(default=None, max_length=200, description="your reference, echoed back"))}
    for f in FIELDS:
        t = _TYPES[f.kind]
        kw: dict[str, Any] = {"description": f.doc or f.name}
        if f.kind in ("float", "int"):
            kw |= {"ge": f.lo} | ({"le": f.hi} if f.hi != float("inf") else {})
        if f.kind == "days_since":
            kw |= {"ge": 0, "le": 10_000}
        if f.kind == "channels":
            kw |= {"max_length": len(CONTACT_CHANNEL_NAMES)}
        required = f.default is None and f.kind != "days_since"
        default = ... if required else (list(f.default) if isinstance(f.default, tuple) else f.default)
        fields[f.name] = (t, Field(default, **kw))
    return create_model("Account", __config__=ConfigDict(extra="forbid", strict=True), **fields)


Account = _account_model()


class DecisionLog:
    """Append-only JSON lines, buffered; ``close()`` flushes everything (called on shutdown)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._f = Path(path).open("a", buffering=1 << 16) if path else None  # noqa: SIM115  (held open for the server's life, closed on shutdown)

    @property
    def enabled(self) -> bool:
        return self._f is not None

    def write(self, entries: list[dict[str, Any]]) -> None:
        if self._f is None:
            return
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
        with self._lock:
            self._f.write(text)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.flush()
                self._f.close()
                self._f = None


class _Unprocessable(Exception):
    def __init__(self, loc: list[Any], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


class _TooLarge(Exception):
    pass


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json", headers=headers)


class _Guard:
    """Pure ASGI middleware (cheaper than ``@app.middleware``): 413 for bodies over the limit,
    whether announced by content-length or streamed in chunks; 401 on ``/v1/`` without the token."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, token: str | None) -> None:
        self.app, self.max, self.token = app, max_body_bytes, token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = auth = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
            elif k == b"authorization":
                auth = v
        if length is not None and (not length.isdigit() or int(length) > self.max):
            await self._too_large()(scope, receive, send)
            return
        authorised = auth is not None and auth.startswith(b"Bearer ") and hmac.compare_digest(auth[7:], self.token or b"")
        if self.token is not None and scope["path"].startswith("/v1/") and not authorised:
            await _json_response({"detail": "missing or wrong bearer token"}, 401, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max:
                raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await self._too_large()(scope, receive, send)

    def _too_large(self) -> Response:
        return _json_response({"detail": f"request body over {self.max} bytes; send fewer accounts per request"}, 413)


def _account_schema() -> dict[str, Any]:
    return Account.model_json_schema()  # type: ignore[attr-defined,no-any-return]


def _body_spec(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _Unprocessable(["body"], f"the body is not valid JSON: {e}", "json_invalid") from None
    if not isinstance(body, dict):
        raise _Unprocessable(["body"], f"expected a JSON object, got {type(body).__name__}", "dict_type")
    return body


def _account_id(record: dict[str, Any], loc: list[Any]) -> str | None:
    aid = record.get("account_id")
    if aid is not None and not (isinstance(aid, str) and len(aid) <= 200):
        raise _Unprocessable([*loc, "account_id"], "account_id must be a string of at most 200 characters, or null")
    return aid


def create_app(
    artifact: str | Path, token: str | None = None, decision_log: str | Path | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The service for one artifact. Request bodies are validated by ``policies.records`` (the one
    validator, also behind ``collectrl decide``); the pydantic models only document them in OpenAPI."""
    state: dict[str, Any] = {"fn": None}
    log = DecisionLog(decision_log)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        state["fn"] = load(artifact)
        # everything loaded so far lives as long as the server: keep it out of the garbage
        # collector's scans, which would otherwise show up as latency spikes
        gc.collect()
        gc.freeze()
        yield
        log.close()

    app = FastAPI(title="collectrl next-best-action service", version="1", lifespan=lifespan)
    app.state.decision_log = log
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, token=token)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(_Unprocessable)
    async def unprocessable(_request: Request, exc: _Unprocessable) -> Response:
        return _json_response({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}]}, 422)

    def fn() -> DecisionFunction:
        f = state["fn"]
        assert f is not None, "the artifact is loaded at start-up"
        return f

    def logged(request_id: str, records: list[dict[str, Any]], views: list[dict[str, Any]], decisions: list[Decision]) -> list[dict[str, Any]]:
        now = time.time()
        policy_id = fn().policy_id
        out, entries = [], []
        for rec, view, d in zip(records, views, decisions, strict=True):
            body = d.as_dict()
            body["account_id"] = rec.get("account_id")
            out.append(body)
            if not log.enabled:
                continue
            entries.append(
                {
                    "request_id": request_id,
                    "policy_id": policy_id,
                    "account_id": body["account_id"],
                    "view_hash": view_hash(view),
                    "decision": {k: body[k] for k in ("channel", "window", "tone", "offer")},
                    "propensity": d.propensity,
                    "reason": d.reason,
                    "time": now,
                }
            )
        if entries:
            log.write(entries)
        return out

    @app.post("/v1/decide", summary="the next best action for one account", openapi_extra=_body_spec(_account_schema()))
    async def decide(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        record = await _json_object(request)
        _account_id(record, ["body"])
        try:
            view = parse_record(record)
        except RecordError as e:
            raise _Unprocessable(["body", *e.loc], str(e)) from None
        d = fn().decide_row(view)
        return _json_response({"request_id": rid, "policy_id": fn().policy_id, "decision": logged(rid, [record], [view], [d])[0]})

    batch_schema = {
        "type": "object",
        "properties": {"accounts": {"type": "array", "items": _account_schema(), "minItems": 1, "maxItems": MAX_BATCH}},
        "required": ["accounts"],
        "additionalProperties": False,
    }

    @app.post("/v1/decide/batch", summary="next best actions for many accounts", openapi_extra=_body_spec(batch_schema))
    async def decide_batch(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        body = await _json_object(request)
        extra = sorted(set(body) - {"accounts"})
        if extra:
            raise _Unprocessable(["body", extra[0]], 'unknown field; the body is {"accounts": [...]}')
        records = body.get("accounts")
        if not isinstance(records, list) or not 1 <= len(records) <= MAX_BATCH:
            raise _Unprocessable(["body", "accounts"], f"expected a list of 1 to {MAX_BATCH} account objects")
        for i, rec in enumerate(records):
            if isinstance(rec, dict):
                _account_id(rec, ["body", "accounts", i])
        try:
            views = [parse_record(rec, i) for i, rec in enumerate(records)]
        except RecordError as e:
            raise _Unprocessable(["body", "accounts", e.index, *e.loc] if e.field != "(record)" else ["body", "accounts", e.index], str(e)) from None
        decisions = fn().decide_batch(views_from_rows(views))
        return _json_response({"request_id": rid, "policy_id": fn().policy_id, "decisions": logged(rid, records, views, decisions)})

    @app.get("/v1/policy", summary="what is being served")
    async def policy() -> dict[str, Any]:
        m = fn().manifest
        return {
            k: m.get(k)
            for k in ("policy_id", "kind", "algo", "scenario", "compliance_profile", "format_version", "created", "evaluation", "files", "versions")
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = state["fn"] is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return app
