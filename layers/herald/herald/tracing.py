"""X-Ray tracing that costs nothing until an invocation is sampled (decision 031).

powertools' `Tracer()` imports the X-Ray SDK and patches botocore, requests, httplib... when it is
built, which a handler module does at import: every cold start pays for it, also when tracing is off
and on every invocation X-Ray does not sample. Yet the X-Ray SDK records nothing for an invocation
whose trace header (`_X_AMZN_TRACE_ID`, set by the Lambda runtime for each invocation, absent during
init) lacks `Root`, `Parent` or `Sampled=1`: its subsegments are dummies. The trace header still
reaches AWS calls without it (botocore adds `X-Amzn-Trace-Id` from that variable in Lambda).

`LazyTracer` has the decorators the handlers use, `capture_lambda_handler` and `capture_method`.
A decorated function runs as is unless tracing is on (powertools' own rule: in Lambda, not under
`sam local`, not `POWERTOOLS_TRACE_DISABLED`) and the current invocation is sampled; then the real
`Tracer` is built (once: the X-Ray SDK is imported and the libraries patched, in that invocation)
and the function runs under its decorator, exactly as `@tracer.capture_...` would have run it. The
`ColdStart` annotation stays true only for the first invocation of the execution environment.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

__all__ = ["TRACE_HEADER", "LazyTracer", "in_current_trace", "invocation_sampled", "tracing_enabled"]

TRACE_HEADER = "_X_AMZN_TRACE_ID"
F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """powertools' `Tracer._is_tracer_disabled`, inverted, without importing the X-Ray SDK."""
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

    if resolve_truthy_env_var_choice(env=environ.get(constants.TRACER_DISABLED_ENV, "false")):
        return False
    in_lambda = environ.get(constants.LAMBDA_TASK_ROOT_ENV)
    emulated = environ.get(constants.SAM_LOCAL_ENV) or environ.get(constants.CHALICE_LOCAL_ENV)
    return bool(in_lambda) and not emulated


def invocation_sampled(environ: Mapping[str, str] = os.environ) -> bool:
    """The current invocation's trace header asks for a trace (the X-Ray SDK's own test: a root, a
    parent and `Sampled=1`)."""
    fields = dict(
        part.strip().split("=", 1) for part in environ.get(TRACE_HEADER, "").split(";") if "=" in part
    )
    return bool(fields.get("Root")) and bool(fields.get("Parent")) and fields.get("Sampled") == "1"


def in_current_trace[R](function: Callable[..., R]) -> Callable[..., R]:
    """`function`, to run on another thread inside the calling thread's X-Ray entity.

    The X-Ray SDK keeps the current segment and subsegment per thread: work handed to a thread pool
    would start a facade segment of its own in each worker, so its subsegments (the boto3 and HTTP
    calls the SDK patched) would hang off the invocation rather than off the step that made them.
    Free unless this invocation is traced: without a sampled invocation, or before the SDK was
    imported (`LazyTracer` imports it on the first sampled invocation), `function` is returned as is.
    The caller must wait for the work before its own subsegment ends (both pools here do): a task
    still running after that would add to an ended entity."""
    if not (tracing_enabled() and invocation_sampled()):
        return function
    core = sys.modules.get("aws_xray_sdk.core")
    if core is None:
        return function
    recorder = core.xray_recorder
    entity = recorder.get_trace_entity()

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> R:
        recorder.set_trace_entity(entity)
        try:
            return function(*args, **kwargs)
        finally:
            recorder.clear_trace_entities()  # the pool's thread belongs to no trace between tasks

    return run


class LazyTracer:
    """The decorators of powertools' `Tracer`; the Tracer itself is built on the first sampled
    invocation. `factory` builds it (tests pass one with their own provider)."""

    def __init__(self, factory: Callable[[], Tracer] | None = None) -> None:
        self._factory = factory
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()
        self._invoked = False

    def sampled_tracer(self) -> Tracer | None:
        """The real Tracer when this invocation is traced (built on first need), else None."""
        if not (tracing_enabled() and invocation_sampled()):
            return None
        if self._tracer is None:
            with self._lock:
                if self._tracer is None:
                    self._tracer = self._build()
        return self._tracer

    def _build(self) -> Tracer:
        if self._factory is not None:
            return self._factory()
        from aws_lambda_powertools import Tracer

        return Tracer()

    @overload
    def capture_lambda_handler(self, handler: F) -> F: ...
    @overload
    def capture_lambda_handler(
        self, handler: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...
    def capture_lambda_handler(
        self,
        handler: F | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        if handler is None:
            return functools.partial(
                self.capture_lambda_handler, capture_response=capture_response, capture_error=capture_error
            )  # type: ignore[return-value]
        traced: list[Callable[..., Any]] = []

        @functools.wraps(handler)
        def run(event: Any, context: Any, **kwargs: Any) -> Any:
            first, self._invoked = not self._invoked, True
            tracer = self.sampled_tracer()
            if tracer is None:
                return handler(event, context, **kwargs)
            if not traced:
                traced.append(
                    tracer.capture_lambda_handler(
                        handler, capture_response=capture_response, capture_error=capture_error
                    )
                )
            if not first:  # the Tracer is new, the execution environment is not
                from aws_lambda_powertools.tracing import tracer as powertools_tracer

                powertools_tracer.is_cold_start = False
            return traced[0](event, context, **kwargs)

        return run  # type: ignore[return-value]

    @overload
    def capture_method(self, method: F) -> F: ...
    @overload
    def capture_method(
        self, method: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...
    def capture_method(
        self,
        method: F | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        """The wrapper returns what the function (or powertools' wrapper of it) returns: a plain
        function's result, a generator, a context manager or a coroutine alike."""
        if method is None:
            return functools.partial(
                self.capture_method, capture_response=capture_response, capture_error=capture_error
            )  # type: ignore[return-value]
        traced: list[Callable[..., Any]] = []

        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            tracer = self.sampled_tracer()
            if tracer is None:
                return method(*args, **kwargs)
            if not traced:
                traced.append(
                    tracer.capture_method(
                        method, capture_response=capture_response, capture_error=capture_error
                    )
                )
            return traced[0](*args, **kwargs)

        return run  # type: ignore[return-value]
