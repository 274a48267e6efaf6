"""The HTTP API: alerts (list, one with its evidence, acknowledge, resolve), an alert's crisis
impact timeline, and the playbooks — the knowledge source for service staff and bots.

A thin runtime over the pure :class:`~stormwatch.crisis.escalation.Escalation`: the
app only parses requests, checks the token and calls it; what the machine returns
for an ack or resolve is handed to ``publish`` (the server writes it to the ``alerts``
topic). Every route but ``/healthz`` needs ``Authorization: Bearer <token>``, compared
in constant time; request bodies are limited to :data:`MAX_BODY_BYTES`, and each client
(address) to :data:`RATE_PER_S` requests a second (bursts of :data:`RATE_BURST`; more get
429 with ``Retry-After``). The OpenAPI spec is served at ``/openapi.json``.

>>> from fastapi.testclient import TestClient
>>> client = TestClient(create_app(Escalation(), token="s3cret"))
>>> client.get("/alerts").status_code, client.get("/alerts", headers=bearer("s3cret")).json()
(401, [])
>>> client.get("/playbooks/outage", headers=bearer("s3cret")).json()["owner"]
'it-incident-management'
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from stormwatch.crisis.escalation import Escalation, Incident, IncidentError
from stormwatch.crisis.playbooks import Playbook
from stormwatch.model import Alert, writable
from stormwatch.ratelimit import TokenBucket

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 16 * 1024
#: Most alerts one list call returns.
MAX_LIST = 500
#: Requests per client and second, sustained, and at once.
RATE_PER_S = 20.0
RATE_BURST = 40

Publish = Callable[[Alert], Awaitable[None]]
_SCHEME = HTTPBearer(auto_error=False, description="the API token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_SCHEME)]


def bearer(token: str) -> dict[str, str]:
    """The request header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


class Problem(BaseModel):
    detail: str


class Action(BaseModel):
    """Who acknowledges or resolves, and an optional note for the incident's history."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$",
                    description="name or rota handle of the person")
    note: str = Field(default="", max_length=1000)


class AlertSummary(BaseModel):
    id: str
    brand: str
    channel: str
    severity: str
    state: Literal["open", "acknowledged", "resolved"]
    level: int
    kind: str
    started_at: str
    last_event: str
    last_event_at: str
    crisis_type: str | None
    crisis_share: float | None
    playbook: str | None
    observed: float
    expected: float
    score: float
    acked_by: str | None
    resolved_by: str | None


class AlertDetail(AlertSummary):
    lower: float
    upper: float
    detector: str
    threshold: float
    negative_share: float | None
    evidence: dict[str, Any]
    samples: list[list[str]]
    history: list[dict[str, Any]]
    playbook_detail: dict[str, Any] | None


class TimelinePoint(BaseModel):
    t: str
    volume: int
    negative_share: float | None
    reach: int


class Impact(BaseModel):
    id: str
    state: str
    started_at: str
    resolved_at: str | None
    minutes_until_calm: float | None
    total_volume: int
    total_reach: int
    peak_volume: int
    points: list[TimelinePoint]
    events: list[dict[str, Any]]


class EscalationOut(BaseModel):
    resend_after_minutes: float
    levels: list[str]


class PlaybookOut(BaseModel):
    id: str
    title: str
    owner: str
    channels: list[str]
    core_messages: dict[str, str]
    escalation: EscalationOut
    runbook: str
    do: list[str]
    dont: list[str]


ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem, "description": "missing or wrong token"},
                                           413: {"model": Problem, "description": "body too large"},
                                           429: {"model": Problem, "description": "over the client's rate"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such incident"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem,
                                                   "description": "the incident's state forbids it"},
                                             400: {"model": Problem, "description": "the body is not JSON"}}


def _detail(esc: Escalation, inc: Incident) -> dict[str, Any]:
    a = inc.alert
    book = esc.playbooks.get(a.playbook or "")
    return {**inc.summary(), "lower": a.lower, "upper": a.upper, "detector": a.detector,
            "threshold": a.threshold, "negative_share": a.negative_share, "evidence": a.evidence,
            "samples": [list(s) for s in a.samples], "history": list(inc.history),
            "playbook_detail": book.to_dict() if book else None}


def create_app(escalation: Escalation, token: str, publish: Publish | None = None,
               clock: Callable[[], float] = time.time, lifespan: Any = None,
               rate: tuple[float, int] = (RATE_PER_S, RATE_BURST)) -> FastAPI:
    """The API over one escalation machine. ``token`` must be non-empty; ``rate`` is
    (requests per second, burst) per client."""
    if not token:
        raise ValueError("the API needs a token (STORMWATCH_API_TOKEN or STORMWATCH_API_TOKEN_FILE)")
    secret = token.encode("utf-8")
    esc = escalation

    async def no_publish(alert: Alert) -> None:
        return None

    send = publish or no_publish
    def authorised(cred: Credentials) -> None:
        given = cred.credentials.encode("utf-8", "surrogateescape") if cred else b""
        if not hmac.compare_digest(given, secret):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="stormwatch", version="1",
                  description="Alerts with evidence, crisis impact, playbooks. Token: Bearer.",
                  lifespan=lifespan)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(Utf8Query)
    app.add_middleware(RateLimit, bucket=TokenBucket(*rate))  # outermost: before any other work

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_problem(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(IncidentError)
    async def incident_error(request: Request, exc: IncidentError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    auth = [Depends(authorised)]

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        """Liveness (no token needed)."""
        return {"status": "ok"}

    @app.get("/alerts", dependencies=auth, responses=ERRORS, tags=["alerts"])
    async def list_alerts(
        state: Literal["open", "acknowledged", "resolved"] | None = None,
        brand: str | None = Query(default=None, max_length=200),
        channel: str | None = Query(default=None, max_length=200),
        limit: int = Query(default=100, ge=1, le=MAX_LIST),
    ) -> list[AlertSummary]:
        """Incidents, newest first; filter by state, brand, channel."""
        rows = [inc for inc in esc.incidents.values()
                if (state is None or inc.state == state) and (brand is None or inc.alert.brand == brand)
                and (channel is None or inc.alert.channel == channel)]
        rows.sort(key=lambda inc: (inc.alert.started_at, inc.alert.id), reverse=True)
        return [AlertSummary(**inc.summary()) for inc in rows[:limit]]

    # ``:path``: alert ids contain "/" (series) — the longer routes come first.
    @app.get("/alerts/{alert_id:path}/timeline", dependencies=auth, responses={**ERRORS, **NOT_FOUND},
             tags=["alerts"])
    async def timeline(alert_id: str) -> Impact:
        """Crisis impact since the alert opened: volume, negative share, reach per bucket, time until calm."""
        return Impact(**esc.impact(alert_id))

    @app.post("/alerts/{alert_id:path}/ack", dependencies=auth,
              responses={**ERRORS, **NOT_FOUND, **CONFLICT}, tags=["alerts"])
    async def acknowledge(alert_id: str, action: Action) -> AlertSummary:
        """Acknowledge: stops the re-sending and escalation of a critical alert."""
        event = esc.ack(alert_id, action.by, clock())
        _note(esc, alert_id, action.note)
        await send(event)
        return AlertSummary(**esc.get(alert_id).summary())

    @app.post("/alerts/{alert_id:path}/resolve", dependencies=auth,
              responses={**ERRORS, **NOT_FOUND, **CONFLICT}, tags=["alerts"])
    async def resolve(alert_id: str, action: Action) -> AlertSummary:
        """Resolve by hand (the policy also resolves once the series is calm again)."""
        event = esc.resolve(alert_id, action.by, clock())
        _note(esc, alert_id, action.note)
        await send(event)
        return AlertSummary(**esc.get(alert_id).summary())

    @app.get("/alerts/{alert_id:path}", dependencies=auth, responses={**ERRORS, **NOT_FOUND},
             tags=["alerts"])
    async def get_alert(alert_id: str) -> AlertDetail:
        """One incident with its evidence, sample posts, history and playbook."""
        return AlertDetail(**_detail(esc, esc.get(alert_id)))

    @app.get("/playbooks", dependencies=auth, responses=ERRORS, tags=["playbooks"])
    async def list_playbooks() -> list[PlaybookOut]:
        """Every playbook: core messages per language, owner, channels, escalation, runbook."""
        return [_playbook(b) for b in esc.playbooks.values()]

    @app.get("/playbooks/{playbook_id}", dependencies=auth,
             responses={**ERRORS, 404: {"model": Problem, "description": "no such playbook"}},
             tags=["playbooks"])
    async def get_playbook(playbook_id: str) -> PlaybookOut:
        """One playbook by id (a crisis type, or ``general``)."""
        book = esc.playbooks.get(playbook_id)
        if book is None:
            raise HTTPException(404, "no such playbook")
        return _playbook(book)

    return app


class Utf8Query:
    """ASGI middleware: answer 400 to a query string that is not UTF-8 (the router would fail on it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                bytes(scope.get("query_string") or b"").decode("utf-8")
            except UnicodeDecodeError as exc:
                response = JSONResponse({"detail": f"the query string is not UTF-8 (byte {exc.start})"},
                                        status_code=400)
                await response({"type": "http"}, None, send)
                return
        await self.app(scope, receive, send)


class RateLimit:
    """ASGI middleware: 429 with ``Retry-After`` once a client (its address) is over its rate."""

    def __init__(self, app: Any, bucket: TokenBucket) -> None:
        self.app = app
        self.bucket = bucket

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.bucket.take(str(client))
            if wait > 0.0:
                retry = max(1, math.ceil(wait))
                response = JSONResponse({"detail": f"too many requests; retry in {retry} s"},
                                        status_code=429, headers={"Retry-After": str(retry)})
                await response({"type": "http"}, None, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: answer 413 to a body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(send)
            return
        seen = 0
        started = refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not refused:
                    refused = True
                    if not started:
                        await self._too_large(send)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)

    async def _too_large(self, send: Any) -> None:
        response = JSONResponse({"detail": f"body larger than {self.limit} bytes"}, status_code=413)
        await response({"type": "http"}, None, send)


def _problem(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error as the 422 answer lists it: where and what, not the input echoed
    back (it may hold NaN or a lone surrogate, which JSON cannot carry).

    >>> _problem({"type": "missing", "loc": ("body", "by" + chr(0xDC80)), "msg": "Field required",
    ...           "input": {}})
    {'type': 'missing', 'loc': ['body', 'by\\\\udc80'], 'msg': 'Field required'}
    """
    return {"type": str(error.get("type", "")),
            "loc": [x if isinstance(x, int) else writable(str(x)) for x in error.get("loc", ())],
            "msg": writable(str(error.get("msg", "invalid")))}


def _playbook(book: Playbook) -> PlaybookOut:
    return PlaybookOut(**book.to_dict())


def _note(esc: Escalation, alert_id: str, note: str) -> None:
    if note:
        esc.get(alert_id).history[-1]["note"] = note
