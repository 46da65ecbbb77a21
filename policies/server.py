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

import hashlib
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
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from policies.records import FIELDS, LAST_OUTCOME_NAMES, RecordError
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


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[Account] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class DecisionLog:
    """Append-only JSON lines, buffered; ``close()`` flushes everything (called on shutdown)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._f = Path(path).open("a", buffering=1 << 16) if path else None  # noqa: SIM115  (held open for the server's life, closed on shutdown)

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


def _view_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


class _Unprocessable(Exception):
    def __init__(self, loc: list[Any], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def create_app(
    artifact: str | Path, token: str | None = None, decision_log: str | Path | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    state: dict[str, Any] = {"fn": None}
    log = DecisionLog(decision_log)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        state["fn"] = load(artifact)
        yield
        log.close()

    app = FastAPI(title="collectrl next-best-action service", version="1", lifespan=lifespan)
    app.state.decision_log = log

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            return JSONResponse({"detail": f"request body over {max_body_bytes} bytes; send fewer accounts per request"}, status_code=413)
        if token is not None and request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode())):
                return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    def fn() -> DecisionFunction:
        f = state["fn"]
        assert f is not None, "the artifact is loaded at start-up"
        return f

    def respond(records: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
        try:
            decisions: list[Decision] = fn().decide_batch(records)
        except RecordError as e:
            raise _Unprocessable(["body", "accounts", e.index, e.field] if len(records) > 1 else ["body", e.field], str(e)) from None
        now = time.time()
        out, entries = [], []
        for rec, d in zip(records, decisions, strict=True):
            body = d.as_dict()
            body["account_id"] = rec.get("account_id")
            out.append(body)
            entries.append(
                {
                    "request_id": request_id,
                    "policy_id": fn().policy_id,
                    "account_id": rec.get("account_id"),
                    "view_hash": _view_hash(rec),
                    "decision": {k: body[k] for k in ("channel", "window", "tone", "offer")},
                    "propensity": d.propensity,
                    "reason": d.reason,
                    "time": now,
                }
            )
        log.write(entries)
        return out

    @app.exception_handler(_Unprocessable)
    async def unprocessable(_request: Request, exc: _Unprocessable) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]}, status_code=422)

    @app.post("/v1/decide", summary="the next best action for one account")
    async def decide(account: Account, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        record = account.model_dump(exclude_none=False)  # type: ignore[attr-defined]
        record = {k: v for k, v in record.items() if v is not None or k.startswith("days_since")}
        return {"request_id": rid, "policy_id": fn().policy_id, "decision": respond([record], rid)[0]}

    @app.post("/v1/decide/batch", summary="next best actions for many accounts")
    async def decide_batch(batch: Batch, request: Request) -> dict[str, Any]:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        records = [{k: v for k, v in a.model_dump().items() if v is not None or k.startswith("days_since")} for a in batch.accounts]  # type: ignore[attr-defined]
        return {"request_id": rid, "policy_id": fn().policy_id, "decisions": respond(records, rid)}

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
