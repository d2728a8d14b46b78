"""Run by test_artefact_starts.py as `python3.13 -I -S import_probe.py '<json spec>'`: a bare
interpreter (no site, no PYTHON* variables, no venv) imports one function's handler module with
`sys.path` set the way the Lambda python3.13 runtime sets it, then checks its cold start.

Standard library only until the import. Prints one JSON line on success; on failure the traceback
(or the reason) goes to stderr and the exit status is not 0.

spec: {"path": [task root, /opt/python, runtime libraries], "module": "app", "handler":
"lambda_handler", "expect_tracing": true, "sampled_trace_header": "Root=...;Parent=...;Sampled=1"}
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

NETWORK_EVENTS = {
    "socket.connect",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
}
network_calls: list[str] = []


def refuse_network(event: str, args: tuple[object, ...]) -> None:
    """Audit hook: a cold start must not talk to the network (here it could only hang or fail)."""
    if event in NETWORK_EVENTS:
        network_calls.append(f"{event}{args!r}"[:300])
        raise OSError(f"import_probe: network call during the cold start refused: {event} {args!r}")


def fail(message: str) -> None:
    print(f"import_probe: {message}", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    spec = json.loads(sys.argv[1])
    if sys.flags.no_site != 1 or sys.flags.isolated != 1:
        fail("run me with -I -S")
    stdlib = [os.path.realpath(p) for p in sys.path if p]
    if any("site-packages" in p for p in stdlib):
        fail(f"the interpreter already has site-packages on its path: {sys.path}")
    allowed = [os.path.realpath(p) for p in spec["path"]]
    sys.path[:0] = spec["path"]
    sys.addaudithook(refuse_network)

    started = time.perf_counter()
    module = importlib.import_module(spec["module"])
    import_seconds = time.perf_counter() - started
    handler = getattr(module, spec["handler"], None)
    if not callable(handler):
        fail(f"{spec['module']}.{spec['handler']} is not a callable: {handler!r}")
    if network_calls:
        fail(f"the cold start tried the network: {network_calls}")

    # Every module loaded comes from the artefact, the runtime libraries or the standard library.
    strays = set()
    probe = os.path.realpath(__file__)  # also loaded as __mp_main__ when multiprocessing is imported
    for name, loaded in list(sys.modules.items()):
        origin = getattr(loaded, "__file__", None)
        if not origin:
            continue
        real = os.path.realpath(origin)
        if real == probe:
            continue
        in_artefact = any(real.startswith(root + os.sep) for root in allowed)
        in_stdlib = any(real.startswith(root + os.sep) for root in stdlib) and "site-packages" not in real
        if not (in_artefact or in_stdlib):
            strays.add(f"{name} from {real}")
    if strays:
        fail("modules loaded from outside the artefact and the runtime:\n" + "\n".join(sorted(strays)))

    tracing: dict[str, object] = {}
    if spec["expect_tracing"]:
        # Decision 031: the X-Ray SDK is loaded by the first sampled invocation, not at cold start.
        if "aws_xray_sdk" in sys.modules:
            fail("the X-Ray SDK was imported at cold start (build it on the first sampled invocation)")
        own = getattr(module, "tracer", None)
        if own is not None and not hasattr(own, "sampled_tracer"):
            fail(f"{spec['module']}.tracer is not lazy: use herald.tracing.LazyTracer")
        if own is None:  # a function that traces nothing itself: the environment must still allow it
            from herald.tracing import LazyTracer

            own = LazyTracer()
        os.environ["_X_AMZN_TRACE_ID"] = spec["sampled_trace_header"]
        tracer = own.sampled_tracer()
        if tracer is None or tracer.disabled:
            fail("a sampled invocation got no live Tracer: the template sets Tracing: Active")
        from aws_xray_sdk.core import patcher, xray_recorder

        patched = sorted(patcher._PATCHED_MODULES)
        if "botocore" not in patched:
            fail(f"the X-Ray SDK did not patch botocore (patched: {patched})")
        context = type(xray_recorder.context).__name__
        if context != "LambdaContext":
            fail(f"the X-Ray recorder does not see Lambda (LAMBDA_TASK_ROOT): its context is {context}")
        tracing = {"patched": patched, "context": context}

    origin = os.path.realpath(module.__file__ or "")
    print(json.dumps({"module_file": origin, "import_seconds": round(import_seconds, 3), **tracing}))


if __name__ == "__main__":
    main()
