"""The next-best-action HTTP service (FastAPI): the production face of an exported policy.

Endpoints: ``POST /v1/decide`` (one account), ``POST /v1/decide/batch`` (many), ``GET /v1/policy``
(what is being served, both arms), ``POST /v1/admin/reload`` (swap an arm's artifact),
``GET /healthz`` (the process is up), ``GET /readyz`` (the artifacts are loaded), ``GET /metrics``
(Prometheus text format) and the OpenAPI document at ``/openapi.json``.

Requests are decoded and validated by msgspec Structs generated from ``policies.records.FIELDS``;
the OpenAPI document is those Structs' JSON Schema, so what is documented is what is accepted.
Bad input never produces a 500: invalid bodies get 422 naming the field, bodies over the size
limit 413, and a missing or wrong bearer token 401 when a token is configured.

Champion/challenger: with a challenger, each account goes to the challenger when a salted hash of
its ``account_id`` falls below ``challenger_share`` (sticky: the same id always gets the same arm);
each arm decides with its own artifact and guardrails. Every decision is one JSON line in the
decision log (fields in the README), with the arm, its assignment probability, the policy version,
the propensity, the policy's probabilities and the validated view, so that off-policy evaluation
can re-score it; the log is flushed on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies import compliance
from policies.actions import Action, flat_index
from policies.hashing import view_hash
from policies.records import Account, WireError, row_from_account, views_from_accounts, wire_error, wire_schema_components
from policies.runtime import ACTION_NAMES, ArtifactError, Columns, Decision, DecisionFunction, load, rounded_probabilities
from policies.schema import CHANNEL_NAMES, OFFER_NAMES, TONE_NAMES, WINDOW_NAMES

MAX_BODY_BYTES = 1_000_000
# with the body limit, any batch over MAX_BATCH minimal accounts still fits in the limit, so it is
# answered 422 naming maxItems rather than 413
MAX_BATCH = 1_000
ARMS = ("champion", "challenger")
CONFIG_ENV = "COLLECTRL_SERVE_CONFIG"  # how `collectrl serve --workers N` hands its settings to each worker

Batch = msgspec.defstruct(
    "Batch",
    [("accounts", Annotated[list[Account], msgspec.Meta(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} accounts")])],  # type: ignore[valid-type]
    forbid_unknown_fields=True,
)


class Reload(msgspec.Struct, forbid_unknown_fields=True):
    """Swap the artifact of one arm."""

    artifact: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, description="the artifact directory, as the server sees it")]
    arm: Literal["champion", "challenger"] = "champion"


class Alternative(msgspec.Struct):
    channel: str
    window: str
    tone: str
    offer: str
    probability: float


class DecisionOut(msgspec.Struct):
    channel: Literal[CHANNEL_NAMES]  # type: ignore[valid-type]
    window: Literal[("", *WINDOW_NAMES)]  # type: ignore[valid-type]
    window_start: str
    window_end: str
    tone: Literal[("", *TONE_NAMES)]  # type: ignore[valid-type]
    offer: Literal[("", *OFFER_NAMES)]  # type: ignore[valid-type]
    propensity: Annotated[float, msgspec.Meta(ge=0, le=1)]
    alternatives: list[Alternative]
    reason: str | None
    account_id: str | None


class DecideOut(msgspec.Struct):
    request_id: str
    policy_id: str
    arm: Literal[ARMS]  # type: ignore[valid-type]
    decision: DecisionOut


class BatchDecisionOut(DecisionOut):
    arm: Literal[ARMS]  # type: ignore[valid-type]


class BatchOut(msgspec.Struct):
    request_id: str
    policy_id: str
    decisions: list[BatchDecisionOut]


class ArmOut(msgspec.Struct):
    """One served arm: its artifact's manifest fields, version, share and directory."""

    policy_id: str
    kind: str
    algo: str | None
    scenario: str | None
    compliance_profile: str
    format_version: int
    created: str | None
    evaluation: dict[str, Any] | None
    files: dict[str, str]
    versions: dict[str, Any] | None
    policy_version: Annotated[str, msgspec.Meta(description="the manifest's digest (16 hex digits): logged with every decision")]
    share: Annotated[float, msgspec.Meta(ge=0, le=1, description="the share of accounts this arm decides")]
    artifact: str


class Arms(msgspec.Struct):
    champion: ArmOut
    challenger: ArmOut | None


class Assignment(msgspec.Struct):
    by: str
    challenger_share: float
    salted: bool


class PolicyOut(ArmOut):
    """What is served: the champion's fields at the top (as before champion/challenger), then both arms."""

    arms: Arms
    assignment: Assignment


class ErrorItem(msgspec.Struct):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(msgspec.Struct):
    detail: list[ErrorItem]


class Problem(msgspec.Struct):
    detail: str


_encode = msgspec.json.Encoder().encode
_encode_lines = msgspec.json.Encoder().encode_lines  # one JSON document per line, each ending in a newline


def _key(name: str) -> bytes:
    return _encode(name) + b":"


class _BatchRows:
    """The JSON of a batch's :class:`BatchDecisionOut` rows, byte for byte what msgspec writes for
    the Structs (tested), without building a Struct per row and per alternative: each flat action's
    fixed fields are encoded once, and a batch's floats are encoded column by column in one call
    (a float's JSON never holds a comma, so the column splits into rows)."""

    def __init__(self) -> None:
        fixed = ("channel", "window", "window_start", "window_end", "tone", "offer")
        # the order msgspec writes; a change to the Structs fails here, not in a client
        assert BatchDecisionOut.__struct_fields__ == (*fixed, "propensity", "alternatives", "reason", "account_id", "arm")
        assert Alternative.__struct_fields__ == ("channel", "window", "tone", "offer", "probability")
        assert BatchOut.__struct_fields__ == ("request_id", "policy_id", "decisions")
        self.head = [b"{" + b",".join(_key(f) + _encode(getattr(a, f)) for f in fixed) + b"," + _key("propensity") for a in ACTION_NAMES]
        alt = Alternative.__struct_fields__[:4]
        self.alt_head = [b"{" + b",".join(_key(f) + _encode(getattr(a, f)) for f in alt) + b"," + _key("probability") for a in ACTION_NAMES]
        self.alternatives, self.reason, self.account_id = b"," + _key("alternatives") + b"[", b"]," + _key("reason"), b"," + _key("account_id")
        self.arm = {name: b"," + _key("arm") + _encode(name) + b"}" for name in ARMS}
        self.reasons: dict[str | None, bytes] = {None: b"null"}

    def rows(self, arm: str, cols: Columns, account_ids: Sequence[str | None]) -> list[bytes]:
        """One arm's rows, in the order of ``cols``."""
        n, k = cols.alt_index.shape
        props = _floats(cols.propensity)
        alt_index = cols.alt_index.tolist()
        alt_prob = _floats(rounded_probabilities(cols.alt_prob).reshape(n * k))
        reasons = self.reasons  # a small set: the reasons are made from the action names and the block names
        for r in cols.reasons:
            if r not in reasons:
                reasons[r] = _encode(r)
        head, alt_head, alternatives, reason, account_id, tail = (
            self.head,
            self.alt_head,
            self.alternatives,
            self.reason,
            self.account_id,
            self.arm[arm],
        )
        out = []
        for i, (j, xs, r, aid) in enumerate(zip(cols.flat.tolist(), alt_index, cols.reasons, account_ids, strict=True)):
            alts = b"},".join([alt_head[x] + alt_prob[i * k + m] for m, x in enumerate(xs) if x >= 0])
            ident = b"null" if aid is None else _encode(aid)
            out.append(b"".join((head[j], props[i], alternatives, alts, b"}" if alts else b"", reason, reasons[r], account_id, ident, tail)))
        return out

    # the response around the rows: {"request_id":...,"policy_id":...,"decisions":[ rows ]}
    _OPEN, _MID, _ROWS = b"{" + _key("request_id"), b"," + _key("policy_id"), b"," + _key("decisions") + b"["

    @classmethod
    def body(cls, request_id: str, policy_id: str, rows: list[bytes]) -> bytes:
        return b"".join((cls._OPEN, _encode(request_id), cls._MID, _encode(policy_id), cls._ROWS, b",".join(rows), b"]}"))


def _floats(x: np.ndarray) -> list[bytes]:
    """Each float of a 1-d array as msgspec writes it."""
    if len(x) == 0:
        return []
    return _encode(x.tolist())[1:-1].split(b",")  # type: ignore[no-any-return]


_BATCH_ROWS = _BatchRows()


class JsonLines:
    """Append-only JSON lines, buffered; ``close()`` flushes everything (called on shutdown)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._f = Path(path).open("ab", buffering=1 << 16) if path else None  # noqa: SIM115  (held open for the server's life, closed on shutdown)

    @property
    def enabled(self) -> bool:
        return self._f is not None

    def write(self, entries: Sequence[Any]) -> None:
        if self._f is None:
            return
        data = _encode_lines(entries)
        with self._lock:
            if self._f is not None:
                self._f.write(data)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.flush()
                self._f.close()
                self._f = None


DecisionLog = JsonLines  # the decision log and the access log are both JSON lines


def assignment_unit(account_id: str, salt: str) -> float:
    """A uniform in [0, 1) from the salted account id (BLAKE2b): the account's fixed position on the
    assignment line. The challenger gets the accounts below its share; a new salt reshuffles them."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Arm:
    name: str
    fn: DecisionFunction
    artifact: str


@dataclass(frozen=True)
class Deployment:
    """What is served, swapped as a whole on reload (a request reads it once, so it finishes on the
    policy it started with)."""

    champion: Arm
    challenger: Arm | None
    challenger_share: float
    salt: str

    def arm_of(self, account_id: str | None) -> tuple[Arm, float]:
        """The account's arm and the probability of that arm."""
        if self.challenger is None:
            return self.champion, 1.0
        assert account_id is not None, "checked by the caller"
        if assignment_unit(account_id, self.salt) < self.challenger_share:
            return self.challenger, self.challenger_share
        return self.champion, 1.0 - self.challenger_share


class _Unprocessable(Exception):
    def __init__(self, loc: list[Any], msg: str, kind: str = "value_error", status: int = 422) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind, self.status = loc, msg, kind, status


class _TooLarge(Exception):
    pass


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json", headers=headers)


class _Metrics:
    """The Prometheus series of one app (its own registry, so several apps in one process, as in
    the tests, do not share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("collectrl_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram(
            "collectrl_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.decisions = Counter("collectrl_decisions", "decisions by arm, channel, tone and offer", ["arm", "channel", "tone", "offer"], registry=r)
        self.overrides = Counter(
            "collectrl_compliance_overrides", "decisions where compliance changed the policy's first choice, by rule", ["arm", "reason"], registry=r
        )
        self.assignments = Counter("collectrl_arm_assignments", "accounts decided by each arm", ["arm"], registry=r)
        self.reloads = Counter("collectrl_reloads", "artifact reloads by arm and result", ["arm", "result"], registry=r)

    def exposition(self) -> bytes:
        """The text format. With several workers (PROMETHEUS_MULTIPROC_DIR set before they start),
        every worker writes its values to that directory and any worker answers with the sum."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined)  # type: ignore[no-any-return]
        return generate_latest(self.registry)  # type: ignore[no-any-return]


_BLOCK = re.compile("|".join(sorted(map(re.escape, compliance.BLOCK_NAMES), key=len, reverse=True)))


def _override_reason(reason: str) -> str:
    """The compliance rule named in a decision's reason (a small, fixed set of metric labels)."""
    found = _BLOCK.findall(reason)
    rule = found[-1] if found else "other"
    return f"guardrail:{rule}" if reason.startswith("guardrail") else rule


class _Labelled:
    """A labelled Prometheus metric with its children kept by label values: ``labels()`` checks
    and locks on every call, which costs more than the rest of a one-account request's metrics."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


Handler = Any  # (body: bytes, request_id: str) -> (status, encoded JSON body)


class _Edge:
    """Pure ASGI middleware (cheaper than ``@app.middleware``): 413 for bodies over the limit,
    whether announced by content-length or streamed in chunks; 401 on ``/v1/`` without the token;
    request counts and latency per route; one JSON line per request in the access log.

    The hot routes (``hot``: the decide routes and the probes) are answered here, in plain ASGI:
    FastAPI's routing and dependency solving would cost more than a decision. They are documented
    with the other routes (see ``create_app``); everything else goes on to FastAPI."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        token: str | None,
        metrics: _Metrics,
        access_log: JsonLines,
        routes: frozenset[str],
        hot: dict[str, tuple[frozenset[str], Handler]],
    ) -> None:
        self.app, self.max, self.token = app, max_body_bytes, token.encode() if token is not None else None
        self.metrics, self.access_log, self.routes, self.hot = metrics, access_log, routes | frozenset(hot), hot
        self.requests, self.latency = _Labelled(metrics.requests), _Labelled(metrics.latency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, recorded)
        finally:
            elapsed = time.perf_counter() - t0
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.requests(route, str(status[0])).inc()
            self.latency(route).observe(elapsed)
            if self.access_log.enabled:
                self.access_log.write(
                    [
                        {
                            "time": time.time(),
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status[0],
                            "duration_ms": round(elapsed * 1e3, 3),
                        }
                    ]
                )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = auth = rid = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
            elif k == b"authorization":
                auth = v
            elif k == b"x-request-id":
                rid = v
        if length is not None and (not length.isdigit() or int(length) > self.max):
            await _send_json(send, 413, self._too_large())
            return
        authorised = auth is not None and auth.startswith(b"Bearer ") and hmac.compare_digest(auth[7:], self.token or b"")
        if self.token is not None and scope["path"].startswith("/v1/") and not authorised:
            await _send_json(send, 401, b'{"detail":"missing or wrong bearer token"}', [(b"www-authenticate", b"Bearer")])
            return
        hot = self.hot.get(scope["path"])
        if hot is not None:
            await self._hot(hot, scope, receive, send, rid)
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
            await _send_json(send, 413, self._too_large())

    async def _hot(self, route: tuple[frozenset[str], Handler], scope: Scope, receive: Receive, send: Send, rid: bytes | None) -> None:
        methods, handler = route
        method = scope["method"]
        if method not in methods:
            detail = b'{"detail":"Method Not Allowed"}'
            await _send_json(send, 405, detail, [(b"allow", ", ".join(sorted(methods)).encode())])
            return
        chunks = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.max:
                await _send_json(send, 413, self._too_large())
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        request_id = rid.decode("latin-1") if rid else _request_id()
        try:
            status, out = handler(chunks[0] if len(chunks) == 1 else b"".join(chunks), request_id)
        except _Unprocessable as exc:
            status, out = exc.status, _encode({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}]})
        await _send_json(send, status, b"" if method == "HEAD" else out)

    def _too_large(self) -> bytes:
        return _encode({"detail": f"request body over {self.max} bytes; send fewer accounts per request"})


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    head = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


_IDS: list[Any] = [None, "", itertools.count()]  # pid, random prefix, counter


def _request_id() -> str:
    """A unique request id: a random prefix per process and a counter (cheaper than a uuid4 per
    request; the prefix is drawn again in a forked worker)."""
    if _IDS[0] != os.getpid():
        _IDS[:] = [os.getpid(), os.urandom(8).hex(), itertools.count()]
    return f"{_IDS[1]}{next(_IDS[2]):08x}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(body: str | None, ok: str, errors: Sequence[int]) -> dict[str, Any]:
    texts = {
        401: "missing or wrong bearer token (when the server has one)",
        403: "admin endpoints are off: the server has no token",
        409: "the server runs several workers: reload them with SIGHUP",
        413: f"request body over the size limit ({MAX_BODY_BYTES} bytes by default)",
        422: "the body is not valid: `detail` names the field and what is allowed",
    }
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": _ref(ok)}}}}
    for code in errors:
        schema = _ref("Invalid" if code == 422 else "Problem")
        responses[str(code)] = {"description": texts[code], "content": {"application/json": {"schema": schema}}}
    out: dict[str, Any] = {"responses": responses}
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return out


def _hot_paths() -> dict[str, Any]:
    """The OpenAPI path items of the routes ``_Edge`` answers itself (FastAPI documents the rest)."""
    probe = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "/v1/decide": {
            "post": {"summary": "the next best action for one account", "operationId": "decide"} | _operation("Account", "DecideOut", (401, 413, 422))
        },
        "/v1/decide/batch": {
            "post": {"summary": "next best actions for many accounts", "operationId": "decide_batch"}
            | _operation("Batch", "BatchOut", (401, 413, 422))
        },
        "/healthz": {"get": {"summary": "the process is up", "operationId": "healthz", "responses": probe}},
        "/readyz": {
            "get": {
                "summary": "the artifacts are loaded",
                "operationId": "readyz",
                "responses": probe | {"503": {"description": "still loading", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }
        },
    }


_HOT_PATHS = _hot_paths()


def create_app(
    artifact: str | Path,
    token: str | None = None,
    decision_log: str | Path | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    challenger: str | Path | None = None,
    challenger_share: float = 0.0,
    salt: str = "",
    access_log: str | Path | None = None,
    workers: int = 1,
) -> FastAPI:
    """The service for a champion ``artifact`` and, optionally, a ``challenger`` deciding for a
    ``challenger_share`` of the accounts (by a hash of ``account_id`` salted with ``salt``)."""
    if challenger is not None and not 0.0 < challenger_share < 1.0:
        raise ValueError(f"challenger_share must be between 0 and 1 (exclusive) with a challenger, got {challenger_share}")
    state: dict[str, Any] = {"deployment": None}
    log = JsonLines(decision_log)
    access = JsonLines(access_log)
    metrics = _Metrics()
    reload_lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        champion = Arm("champion", load(artifact), str(artifact))
        other = Arm("challenger", load(challenger), str(challenger)) if challenger is not None else None
        state["deployment"] = Deployment(champion, other, challenger_share if other else 0.0, salt)
        # SIGHUP reloads every arm from its directory (with several workers the supervisor passes it
        # to each, policies.workers); only the main thread may set it
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_from_disk()))
        # everything loaded so far lives as long as the server: keep it out of the garbage
        # collector's scans, which would otherwise show up as latency spikes
        gc.collect()
        gc.freeze()
        yield
        log.close()
        access.close()

    # FastAPI's OpenTelemetry hooks are off (they look up the providers on every request): the
    # service has its own Prometheus metrics and access log
    off: Any = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="collectrl next-best-action service", version="1", lifespan=lifespan, telemetry=off)
    app.state.decision_log = log
    app.state.metrics = metrics

    @app.exception_handler(_Unprocessable)
    async def unprocessable(_request: Request, exc: _Unprocessable) -> Response:
        return _json_response({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}]}, exc.status)

    def deployment() -> Deployment:
        d = state["deployment"]
        assert d is not None, "the artifacts are loaded at start-up"
        return d  # type: ignore[no-any-return]

    def decode(raw: bytes, kind: Any) -> Any:
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as e:  # (and its subclass ValidationError)
            loc, msg = wire_error(e)
            raise _Unprocessable(["body", *loc], msg, "json_invalid" if not isinstance(e, msgspec.ValidationError) else "value_error") from None

    def view_of(account: Any, loc: list[Any]) -> dict[str, Any]:
        try:
            return row_from_account(account)
        except WireError as e:
            raise _Unprocessable([*loc, *e.loc], str(e)) from None

    def assign(dep: Deployment, accounts: Sequence[Any]) -> list[tuple[Arm, float]]:
        if dep.challenger is not None:
            for i, a in enumerate(accounts):
                if a.account_id is None:
                    loc = ["body", "account_id"] if len(accounts) == 1 and i == 0 else ["body", "accounts", i, "account_id"]
                    raise _Unprocessable(loc, "account_id is required while a challenger is served: it assigns the account to an arm")
        return [dep.arm_of(a.account_id) for a in accounts]

    decisions, assignments, overrides = _Labelled(metrics.decisions), _Labelled(metrics.assignments), _Labelled(metrics.overrides)

    def count(arm: str, actions: Sequence[Action | Decision], reasons: Sequence[str | None]) -> None:
        """Metrics of one arm's decisions, counted per distinct label set (a batch touches a few
        series many times)."""
        for (channel, tone, offer), k in Tally((a.channel, a.tone, a.offer) for a in actions).items():
            decisions(arm, channel, tone, offer).inc(k)
        assignments(arm).inc(len(actions))
        for reason, k in Tally(r for r in reasons if r is not None).items():
            overrides(arm, _override_reason(reason)).inc(k)

    def log_entries(
        request_id: str, accounts: Sequence[Any], views: Sequence[dict[str, Any]], arm: Arm, prob: float, cols: Columns | Sequence[Decision]
    ) -> list[dict[str, Any]]:
        """Decision log lines for one arm's decisions (``cols``: a batch's columns, or one Decision)."""
        now, fn = time.time(), arm.fn
        if isinstance(cols, Columns):
            heads = [h.tolist() for h in cols.probs] if cols.probs is not None else None
            rows = zip(cols.actions.tolist(), cols.flat.tolist(), cols.propensity.tolist(), cols.reasons, strict=True)
            items = [(ACTION_NAMES[j], tuple(action), p, r, [h[i] for h in heads] if heads else None) for i, (action, j, p, r) in enumerate(rows)]
        else:
            items = [(d, d.action, d.propensity, d.reason, d.probs) for d in cols]
        entries = []
        for a, view, (named, action, propensity, reason, probs) in zip(accounts, views, items, strict=True):
            entries.append(
                {
                    "time": now,
                    "request_id": request_id,
                    "account_id": a.account_id,
                    "day": a.day,
                    "arm": arm.name,
                    "assignment_prob": prob,
                    "policy_id": fn.policy_id,
                    "policy_version": fn.version,
                    "decision": {"channel": named.channel, "window": named.window, "tone": named.tone, "offer": named.offer},
                    "action_index": flat_index(action),
                    "propensity": propensity,
                    "probs": None if probs is None else dict(zip(("channel", "window", "tone", "offer"), probs, strict=True)),
                    "reason": reason,
                    "view_hash": view_hash(view),
                    "view": view,
                }
            )
        return entries

    def decide(body: bytes, rid: str) -> tuple[int, bytes]:
        """POST /v1/decide: one account."""
        account = decode(body, Account)
        dep = deployment()
        view = view_of(account, ["body"])
        arm, prob = assign(dep, [account])[0]
        d = arm.fn.decide_row(view)
        count(arm.name, [d], [d.reason])
        if log.enabled:
            log.write(log_entries(rid, [account], [view], arm, prob, [d]))
        alts = [Alternative(a.channel, a.window, a.tone, a.offer, a.probability) for a in d.alternatives]
        out = DecisionOut(d.channel, d.window, d.window_start, d.window_end, d.tone, d.offer, d.propensity, alts, d.reason, account.account_id)
        return 200, _encode(DecideOut(rid, arm.fn.policy_id, arm.name, out))

    def decide_batch(body: bytes, rid: str) -> tuple[int, bytes]:
        """POST /v1/decide/batch: many accounts, decided column by column."""
        accounts = decode(body, Batch).accounts
        dep = deployment()
        try:
            batch = views_from_accounts(accounts)
        except WireError as e:
            raise _Unprocessable(["body", "accounts", *e.loc], str(e)) from None
        arms = assign(dep, accounts)
        out: list[Any] = [None] * len(accounts)
        entries: list[dict[str, Any]] = []
        for arm in (dep.champion, dep.challenger):
            if arm is None:
                continue
            if dep.challenger is None:
                idx, part = list(range(len(accounts))), batch
            else:
                idx = [i for i, (a, _) in enumerate(arms) if a is arm]
                if not idx:
                    continue
                part = batch.take(np.array(idx, dtype=np.int64))
            cols = arm.fn.decide_columns(part, probs=log.enabled)
            mine = [accounts[i] for i in idx]
            named = [ACTION_NAMES[j] for j in cols.flat.tolist()]
            count(arm.name, named, cols.reasons)
            for i, row in zip(idx, _BATCH_ROWS.rows(arm.name, cols, [a.account_id for a in mine]), strict=True):
                out[i] = row
            if log.enabled:
                entries += log_entries(rid, mine, part.to_rows(), arm, arms[idx[0]][1], cols)
        if entries:
            log.write(entries)
        return 200, _BATCH_ROWS.body(rid, dep.champion.fn.policy_id, out)

    def describe(arm: Arm, share: float) -> dict[str, Any]:
        m = arm.fn.manifest
        keys = ("policy_id", "kind", "algo", "scenario", "compliance_profile", "format_version", "created", "evaluation", "files", "versions")
        return {k: m.get(k) for k in keys} | {"policy_version": arm.fn.version, "share": share, "artifact": arm.artifact}

    what = "what is being served: the champion and, if any, the challenger"

    @app.get("/v1/policy", summary=what, openapi_extra=_operation(None, "PolicyOut", (401,)))
    async def policy() -> Response:
        dep = deployment()
        champion = describe(dep.champion, 1.0 - dep.challenger_share)
        challenger = describe(dep.challenger, dep.challenger_share) if dep.challenger is not None else None
        rule = "blake2b(account_id, key=salt) / 2**64 < challenger_share"
        assignment = {"by": rule, "challenger_share": dep.challenger_share, "salted": bool(dep.salt)}
        # converted, not just encoded: what is answered is checked against the documented schema
        body = msgspec.convert(champion | {"arms": {"champion": champion, "challenger": challenger}, "assignment": assignment}, PolicyOut)
        return _json_response(body)

    @app.post(
        "/v1/admin/reload",
        summary="swap the artifact of one arm (atomic; a bad artifact is refused and the current one keeps serving)",
        openapi_extra=_operation("Reload", "Problem", (401, 403, 409, 413, 422)),
    )
    async def reload(request: Request) -> Response:
        if token is None:
            return _json_response({"detail": "admin endpoints need the server to run with a token (--token-file)"}, 403)
        if workers > 1:
            detail = (
                "with several workers a reload would reach only one of them: replace the artifact directories"
                " and send SIGHUP to the server, which has every worker reload them"
            )
            return _json_response({"detail": detail}, 409)
        body = decode(await request.body(), Reload)
        async with reload_lock:
            dep = deployment()
            if body.arm == "challenger" and dep.challenger is None:
                raise _Unprocessable(["body", "arm"], "no challenger is served; start the server with --challenger to have one")
            try:
                fn = await run_in_threadpool(load, body.artifact)
            except ArtifactError as e:
                metrics.reloads.labels(body.arm, "refused").inc()
                raise _Unprocessable(["body", "artifact"], f"refused, still serving {getattr(dep, body.arm).fn.version}: {e}") from None
            new = Arm(body.arm, fn, body.artifact)
            state["deployment"] = replace(dep, champion=new) if body.arm == "champion" else replace(dep, challenger=new)
            metrics.reloads.labels(body.arm, "ok").inc()
        return _json_response({"detail": f"{body.arm} now serves {fn.policy_id} version {fn.version}"})

    async def reload_from_disk() -> None:
        async with reload_lock:
            dep = deployment()
            try:
                champion = Arm("champion", await run_in_threadpool(load, dep.champion.artifact), dep.champion.artifact)
                other = dep.challenger
                if other is not None:
                    other = Arm("challenger", await run_in_threadpool(load, other.artifact), other.artifact)
            except ArtifactError as e:
                metrics.reloads.labels("all", "refused").inc()
                print(f"collectrl serve: SIGHUP reload refused, still serving {dep.champion.fn.version}: {e}", file=sys.stderr)
                return
            state["deployment"] = replace(dep, champion=champion, challenger=other)
            metrics.reloads.labels("all", "ok").inc()
            print(f"collectrl serve: SIGHUP reloaded champion {champion.fn.policy_id} version {champion.fn.version}", file=sys.stderr)

    def healthz(_body: bytes, _rid: str) -> tuple[int, bytes]:
        return 200, b'{"status":"ok"}'

    def readyz(_body: bytes, _rid: str) -> tuple[int, bytes]:
        ready = state["deployment"] is not None
        return (200, b'{"ready":true}') if ready else (503, b'{"ready":false}')

    @app.get("/metrics", summary="Prometheus metrics (text format)", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    get, post = frozenset({"GET", "HEAD"}), frozenset({"POST"})
    hot = {"/v1/decide": (post, decide), "/v1/decide/batch": (post, decide_batch), "/healthz": (get, healthz), "/readyz": (get, readyz)}
    routes = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    app.add_middleware(_Edge, max_body_bytes=max_body_bytes, token=token, metrics=metrics, access_log=access, routes=routes, hot=hot)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            doc["paths"] = _HOT_PATHS | doc["paths"]
            components = wire_schema_components([Account, Batch, Reload, DecideOut, BatchOut, PolicyOut, Invalid, Problem])
            doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The app of one worker of ``collectrl serve --workers N`` (a uvicorn factory): settings from
    the ``COLLECTRL_SERVE_CONFIG`` JSON; each worker writes its own decision and access logs, named
    ``FILE.w<pid>``, so no two processes append to one file."""
    cfg = json.loads(os.environ[CONFIG_ENV])
    token = Path(cfg.pop("token_file")).read_text().strip() if cfg.get("token_file") else None
    cfg.pop("token_file", None)
    for key in ("decision_log", "access_log"):
        if cfg.get(key):
            cfg[key] = f"{cfg[key]}.w{os.getpid()}"
    return create_app(token=token, **cfg)
