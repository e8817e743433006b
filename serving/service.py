"""The behave HTTP service: BehaveGPT ``@champion`` behind BentoML 1.4.

Start it from the repository root with ``bentoml serve serving.service:BehaveService`` (what
``behave serve`` runs). At start-up it loads ``behave.behavegpt@champion`` from the MLflow
registry (``MLFLOW_TRACKING_URI``, default ``./mlflow/mlflow.db``) — or, if
``BEHAVE_BEHAVEGPT_BUNDLE`` names a local bundle folder, from there — on CUDA when available.
Without a champion the service still starts: the model routes answer 503 saying how to train
one, the health routes stay up.

Routes (Swagger UI at ``/``, OpenAPI spec at ``/docs.json``):

- ``POST /next_behavior`` ``{"requests": [{"history": [Event, ...], "top_k": 10}, ...]}`` ->
  one result per request. Adaptive batching: concurrent HTTP requests are grouped into one
  batched forward pass (each HTTP request may itself carry several histories).
- ``POST /generate`` ``{"history": [...], "num_steps": 20, "temperature": 1.0, "top_k": null,
  "seed": null}`` -> sampled future behaviors; the same seed gives the same output.
- ``GET /behaviors`` -> behavior, location and domain names the model knows.
- ``/livez``, ``/readyz``, ``/metrics`` from BentoML.

Bad input is rejected while BentoML parses the request (see :mod:`serving.schemas`): HTTP 400
with ``{"error": ..., "detail": [{"type", "loc", "msg"}, ...]}``, ``loc`` naming the field.
Overload answers 429 (``max_concurrency``), a request past ``timeout`` 504.

No training code is imported here: only :mod:`behave.inference` and :mod:`behave.tracking`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets

import bentoml
from fastapi import FastAPI
from pydantic import Field, ValidationError
from starlette.responses import JSONResponse

from serving import schemas
from serving.schemas import (
    MAX_GENERATE_STEPS,
    MAX_HISTORY_EVENTS,
    MAX_REQUESTS_PER_CALL,
    MAX_TEMPERATURE,
    BehaviorsResponse,
    ErrorResponse,
    GenerateResponse,
    GenerateTopK,
    History,
    NextBehaviorInput,
    NextBehaviorRequest,
    NextBehaviorResponse,
)

__all__ = ["BehaveService"]

log = logging.getLogger("behave.serving")

FAMILY = "behavegpt"
ALIAS = "champion"
BUNDLE_ENV = "BEHAVE_BEHAVEGPT_BUNDLE"
# Largest adaptive batch of /next_behavior requests. 1 turns adaptive batching off: each HTTP
# call is then handled alone (same request body), the baseline of benchmarks/serving.py.
MAX_BATCH_SIZE = int(os.environ.get("BEHAVE_MAX_BATCH_SIZE", MAX_REQUESTS_PER_CALL))
ADAPTIVE_BATCHING = MAX_BATCH_SIZE > 1  # BentoML requires max_batch_size > 1 when batching

# Plain HTTP routes BentoML's @bentoml.api (always POST) cannot express; BentoML mounts this
# app and merges its routes into /docs.json. Its own docs pages are off: BentoML serves them.
http_routes = FastAPI(title="behave", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(http_routes, path="/")
@bentoml.service(
    name="behave",
    # The device is chosen at run time (CUDA if torch sees one, else CPU), so the same service
    # runs everywhere. On a GPU host, ask the scheduler for one with resources={"gpu": 1}
    # (BentoML then sets CUDA_VISIBLE_DEVICES; it refuses to start where there is no GPU).
    resources={"cpu": "1"},
    workers=1,
    traffic={
        "timeout": 30,  # seconds; a request still running then gets 504
        "max_concurrency": 64,  # requests in flight at once; beyond that 429
    },
)
class BehaveService:
    def __init__(self) -> None:
        import torch

        _one_line_client_errors()
        if log.getEffectiveLevel() > logging.INFO:  # BentoML leaves non-bentoml loggers at WARNING
            log.setLevel(logging.INFO)
        self.predictor = None
        self.model_version = ""
        self.unavailable: str | None = None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        bundle = os.environ.get(BUNDLE_ENV)
        if bundle:
            source, self.model_version, path = f"local bundle {bundle}", "local", bundle
        else:
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # log noise
            from behave import tracking

            try:
                version = tracking.get_version(FAMILY, ALIAS)
            except LookupError as err:
                self.unavailable = str(err)
                log.warning("BehaveGPT routes answer 503: %s", err)
                return
            name = tracking.registered_name(FAMILY)
            self.model_version = str(version.version)
            source = f"{name}@{ALIAS} (version {version.version})"
            # pin the version read above, in case the alias moves while we download
            path = tracking.resolve_model_dir(f"models:/{name}/{version.version}")
        from behave.inference.behavegpt import BehaveGPTPredictor

        self.predictor = BehaveGPTPredictor.from_dir(path, device)
        schemas.use_vocabulary(self.predictor.vocab.behaviors[2:])
        log.info(
            "BehaveGPT %s on %s: %d behaviors, context %d events",
            source,
            device,
            len(self.predictor.vocab.behaviors) - 2,
            self.predictor.context_length,
        )

    # ---- routes --------------------------------------------------------------------------
    @bentoml.api(
        batchable=ADAPTIVE_BATCHING,
        input_spec=NextBehaviorInput,  # {"requests": [...]} (+ a hint for a bare request)
        # queued longer than max_latency_ms: 503 (the dispatcher's overload answer)
        **({"max_batch_size": MAX_BATCH_SIZE, "max_latency_ms": 10_000} if ADAPTIVE_BATCHING else {}),
    )
    def next_behavior(self, requests: list[NextBehaviorRequest]) -> list[NextBehaviorResponse]:
        """Most likely next behaviors, with probabilities, after each history.

        Send one or more requests per call; concurrent calls are batched together. Histories
        longer than the model's context are truncated to their most recent events.
        """
        from behave.inference.behavegpt import HistoryEvent

        predictor = self._require_model()
        log.debug("next_behavior: batch of %d", len(requests))
        # Requests were validated (vocabulary included) before they joined this batch.
        context = predictor.context_length
        histories = [
            [
                HistoryEvent(e.behavior, e.timestamp, e.location, e.domain)
                for e in r.history[-context:]
            ]
            for r in requests
        ]
        results = predictor.next_behavior(histories, top_k=max(r.top_k for r in requests))
        return [
            NextBehaviorResponse(
                behaviors=result["behaviors"][: request.top_k],
                probabilities=result["probabilities"][: request.top_k],
                **self._truncation(len(request.history), result["events_used"]),
            )
            for request, result in zip(requests, results, strict=True)
        ]

    @bentoml.api
    def generate(
        self,
        history: History,
        num_steps: int = Field(
            20, ge=1, le=MAX_GENERATE_STEPS, description="behaviors to generate"
        ),
        temperature: float = Field(
            1.0, gt=0, le=MAX_TEMPERATURE, allow_inf_nan=False, description="softmax temperature"
        ),
        top_k: GenerateTopK = None,
        seed: int | None = Field(
            None, ge=0, lt=2**63, description="sampling seed; null: a random one (returned)"
        ),
    ) -> GenerateResponse:
        """Samples the next ``num_steps`` behaviors after a history.

        Generated events keep the time, location and domain of the last observed event.
        """
        from behave.inference.behavegpt import HistoryEvent, InputError

        predictor = self._require_model()
        seed = secrets.randbits(31) if seed is None else seed
        recent = history[-predictor.context_length :]
        events = [HistoryEvent(e.behavior, e.timestamp, e.location, e.domain) for e in recent]
        try:
            result = predictor.generate(
                events, num_steps, temperature=temperature, top_k=top_k, seed=seed
            )
        except InputError as err:  # the schema checks the same things; kept as a safety net
            return _input_error_response(err)
        return GenerateResponse(
            behaviors=result["behaviors"],
            seed=seed,
            **self._truncation(len(history), result["events_used"]),
        )

    @http_routes.get(
        "/behaviors",
        response_model=BehaviorsResponse,
        responses={503: {"model": ErrorResponse, "description": "no model loaded"}},
        summary="Names the model knows",
    )
    def behaviors(self):
        """Behavior, location and domain names of the loaded model (to fix unknown-behavior errors)."""
        if self.predictor is None:
            return _unavailable_response(self.unavailable)
        vocab = self.predictor.vocab
        return BehaviorsResponse(
            behaviors=vocab.behaviors[2:],
            locations=vocab.locations,
            domains=vocab.domains,
            context_length=self.predictor.context_length,
            max_history_events=MAX_HISTORY_EVENTS,
            model_version=self.model_version,
        )

    # ---- helpers -------------------------------------------------------------------------
    def _require_model(self):
        if self.predictor is None:  # normally answered earlier by _ModelRequired
            raise bentoml.exceptions.ServiceUnavailable(self.unavailable or "no model loaded")
        return self.predictor

    def _truncation(self, total: int, used: int) -> dict:
        return {
            "events_used": used,
            "truncated": total > used,
            "truncated_events": total - used,
            "message": schemas.truncation_message(total, used),
            "model_version": self.model_version,
        }


class _ModelRequired:
    """ASGI middleware: while no model is loaded, the model routes answer 503 with the reason.

    BentoML turns exceptions of status >= 500 into a generic body, and a batchable route cannot
    return its own response, so the clear message is given here, before routing.
    """

    def __init__(self, app, paths: list[str]) -> None:
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            service = bentoml.get_current_service()
            if service.predictor is None:
                await _unavailable_response(service.unavailable)(scope, receive, send)
                return
        await self.app(scope, receive, send)


BehaveService.add_asgi_middleware(
    _ModelRequired, paths=[method.route for method in BehaveService.apis.values()]
)


def _unavailable_response(reason: str | None) -> JSONResponse:
    return JSONResponse({"error": reason or "no model loaded"}, status_code=503)


def _input_error_response(err) -> JSONResponse:
    """An :class:`~behave.inference.behavegpt.InputError` as the 400 body pydantic errors get."""
    loc = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", err.field)]
    return JSONResponse(
        {
            "error": "1 validation error",
            "detail": [{"type": "invalid_input", "loc": loc, "msg": err.message}],
        },
        status_code=400,
    )


class _ClientErrorFilter(logging.Filter):
    """BentoML logs each rejected request at ERROR with a full traceback; make it one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in errors[:3]
            )
            if len(errors) > 3:
                reason += f"; and {len(errors) - 3} more"
            status = 400
        elif isinstance(exc, bentoml.exceptions.BentoMLException) and exc.error_code < 500:
            reason, status = str(exc), int(exc.error_code)
        else:
            return True
        path, method = (
            (record.args + (None, None))[:2] if isinstance(record.args, tuple) else (None, None)
        )
        record.msg, record.args = "rejected %s %s (%d): %s", (method, path, status, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def _one_line_client_errors() -> None:
    target = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML logs them
    if not any(isinstance(f, _ClientErrorFilter) for f in target.filters):
        target.addFilter(_ClientErrorFilter())
