"""Cold start against its floor (issue 13, item 3; decision 031): `make bench`'s cold-start section.

For each function of template.yaml, in the same run, two modules are imported in fresh interpreters,
alternately, `RUNS` times each, and their medians compared:

- the handler module (`functions.<name>.app`), as Lambda's init phase imports it;
- its floor: a generated module that imports boto3, creates the boto3 clients the handler creates
  at import, and imports the submodules of the function's own provider SDK that the handler loads
  (its `requirements.txt`: firebase_admin for push, twilio for SMS, ...) -- nothing else.

The floor is generated from what the handler does, not declared in a table that could drift: a
discovery run (untimed) imports the handler with boto3's `Session.client` wrapped, which sees every
client built at import by whatever code builds it (the handler, a service object, powertools'
parameters), and lists the modules loaded from the distributions the function's requirements.txt
names. A provider SDK the handler does not import at cold start is not in its floor either, and the
section prints it as deferred.

Both run the way Lambda runs them, so the comparison is honest:
- Lambda's environment for the function (tests/infra/lambda_environment: the service's variables,
  Tracing: Active, the template's variables resolved), without `_X_AMZN_TRACE_ID`, which the runtime
  sets per invocation, not during init;
- an artefact view of the dev venv: a bare interpreter (`-I -S`) whose path holds the repository, the
  layer's source and a folder of links to exactly the distributions the artefact would carry (the
  function's and the layer's requirements, the runtime's boto3 and their dependencies). Optional
  accelerators the dev venv happens to have (awscrt, pyOpenSSL: ~80 ms under botocore) and packages
  only other functions carry cannot load, as on Lambda.

Beside the ratio: what the first sampled invocation pays to build the X-Ray tracer
(`herald.tracing`), and what the handler loads above its floor by top-level package (`-X importtime`).

The ratio is taken on CPU time of the importing process (`time.process_time`): on a shared machine
the wall time mostly measures the other processes; Lambda scales an init phase's wall time by the
function's CPU share, the same factor for a handler and its floor. Wall medians are kept beside.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / ".local" / "bench-cold"
RUNS = 5
# An invocation's trace header as Lambda sets it when X-Ray samples the invocation.
SAMPLED_TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TARGET_RATIO = 1.15
# What the python3.13 runtime ships besides the standard library (as tests/infra/test_artefact_starts).
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")

# Run by a bare interpreter (`-I -S`): the standard library only until the timed import.
PROBE = r"""
import importlib, json, os, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]
created = []
if spec["discover"]:
    import boto3.session
    client = boto3.session.Session.client
    def counted(self, service_name, *args, **kwargs):
        created.append(service_name)
        return client(self, service_name, *args, **kwargs)
    boto3.session.Session.client = counted
wall, cpu = time.perf_counter(), time.process_time()
module = importlib.import_module(spec["module"])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
report = {"wall": wall, "cpu": cpu, "xray_at_import": "aws_xray_sdk" in sys.modules}
lazy = getattr(getattr(module, "tracer", None), "sampled_tracer", None)
if spec["deferred"] and lazy is not None:
    os.environ["_X_AMZN_TRACE_ID"] = spec["sampled_header"]
    cpu = time.process_time()
    lazy()
    report["deferred_tracer"] = time.process_time() - cpu
if spec["discover"]:
    report["clients"] = created
    report["modules"] = sorted(sys.modules)
print(json.dumps(report))
"""


@dataclass
class Function:
    label: str
    logical_id: str
    module: str
    own_requirements: list[str]
    layer_requirements: list[str]
    env: dict[str, str] = field(default_factory=dict)


# -- the functions, as Lambda would start them ------------------------------------------------------
def functions() -> list[Function]:
    """Every function of template.yaml with its requirements and Lambda's environment for it."""
    from tests.infra.lambda_environment import function_property, lambda_environment
    from tools.cfn_yaml import load_template

    template = load_template(REPO / "template.yaml")
    resources = template["Resources"]
    found = []
    for logical_id, resource in sorted(resources.items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        code = REPO / str(function_property(template, logical_id, "CodeUri")).strip("/")
        handler_module = str(function_property(template, logical_id, "Handler")).rpartition(".")[0]
        module = ".".join((*code.relative_to(REPO).parts, handler_module))
        layer_requirements: list[str] = []
        for layer in function_property(template, logical_id, "Layers") or []:
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_id in resources:
                content = REPO / str(resources[layer_id]["Properties"]["ContentUri"]).strip("/")
                layer_requirements += _requirements(content / "requirements.txt")
        env = lambda_environment(
            template,
            logical_id,
            task_root=code,
            opt=WORKSPACE / "opt",
            runtime_dir=WORKSPACE / "runtime",
            tracing_active=function_property(template, logical_id, "Tracing") == "Active",
        )
        env.pop("_X_AMZN_TRACE_ID", None)  # set by the runtime for each invocation, absent during init
        found.append(
            Function(
                label=code.name,
                logical_id=logical_id,
                module=module,
                own_requirements=_requirements(code / "requirements.txt"),
                layer_requirements=layer_requirements,
                env=env,
            )
        )
    return found


def _requirements(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("-")]


# -- the artefact view of the dev venv --------------------------------------------------------------
def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def closure(requirements: Iterable[str]) -> set[str]:
    """The distributions `requirements` install (canonical names), dependencies and extras included,
    as found in the dev venv."""
    from packaging.requirements import Requirement

    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name, extras = _canonical(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.add(name)
        for line in distribution.requires or []:
            dependency = Requirement(line)
            if dependency.marker and not any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras | {""}
            ):
                continue
            dependency.marker = None
            pending.append(dependency)
    return found


def _site_files() -> tuple[Path, dict[str, list[PurePosixPath]]]:
    """The venv's site-packages and, per distribution installed there, its files (relative)."""
    site = Path(importlib.metadata.distribution("boto3").locate_file("")).resolve()
    files: dict[str, list[PurePosixPath]] = {}
    for distribution in importlib.metadata.distributions():
        if Path(distribution.locate_file("")).resolve() != site:
            continue
        paths = [
            PurePosixPath(str(f))
            for f in distribution.files or []
            if f.parts and f.parts[0] != ".." and "__pycache__" not in f.parts
        ]
        files.setdefault(_canonical(distribution.metadata["Name"]), []).extend(paths)
    return site, files


def build_view(target: Path, distributions: set[str]) -> None:
    """`target`: links to the files of `distributions` only. A folder shared with a distribution
    left out (a namespace package such as `google`) is made real and linked one level down."""
    site, files = _site_files()
    owners: dict[PurePosixPath, set[str]] = {}
    wanted: dict[PurePosixPath, set[str]] = {}  # folder -> the entries below it to place
    for name, paths in files.items():
        for path in paths:
            for depth in range(1, len(path.parts) + 1):
                prefix = PurePosixPath(*path.parts[:depth])
                owners.setdefault(prefix, set()).add(name)
                if name in distributions:
                    wanted.setdefault(PurePosixPath(*path.parts[: depth - 1]), set()).add(
                        path.parts[depth - 1]
                    )
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)

    def place(folder: PurePosixPath) -> None:
        for entry in sorted(wanted.get(folder, ())):
            relative = folder / entry
            if owners[relative] <= distributions or relative not in wanted:
                (target / relative).symlink_to(site / relative)
            else:
                (target / relative).mkdir()
                place(relative)

    place(PurePosixPath())


# -- measuring --------------------------------------------------------------------------------------
def _probe(
    function: Function, path: list[str], module: str, *, discover: bool, deferred: bool
) -> dict[str, Any]:
    spec = {
        "path": path,
        "module": module,
        "discover": discover,
        "deferred": deferred,
        "sampled_header": SAMPLED_TRACE_HEADER,
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, json.dumps(spec)],
        env=function.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        trouble = done.stderr.strip().splitlines()[-1:] or ["no stderr"]
        raise RuntimeError(f"{module} did not import in {function.label}'s view: {trouble[0]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def floor_source(function: Function, clients: list[str], sdk_modules: list[str]) -> str:
    lines = [
        f'"""The cold-start floor of {function.label}: boto3, the clients its handler creates at import'
        ' and the provider SDK modules it loads. Generated by local/bench_cold.py."""',
        "import boto3",
        "",
        "clients = [",
        *(f"    boto3.client({service!r})," for service in clients),
        "]",
        *(f"import {name}" for name in sdk_modules),
        "",
    ]
    return "\n".join(lines)


def _top_levels(distributions: set[str]) -> set[str]:
    return {
        top
        for top, owners in importlib.metadata.packages_distributions().items()
        if any(_canonical(owner) in distributions for owner in owners)
    }


def measure(function: Function, runs: int = RUNS) -> dict[str, Any]:
    """One function's handler import against its floor (medians of `runs` fresh interpreters each)."""
    layer_and_runtime = closure(list(RUNTIME_DISTRIBUTIONS) + function.layer_requirements)
    everything = layer_and_runtime | closure(function.own_requirements)
    view = WORKSPACE / "views" / function.label
    build_view(view, everything)
    path = [str(REPO), str(REPO / "layers" / "herald"), str(view)]

    found = _probe(function, path, function.module, discover=True, deferred=False)
    from packaging.requirements import Requirement

    sdk_roots = {_canonical(Requirement(line).name) for line in function.own_requirements}
    sdk_tops = _top_levels(sdk_roots)
    sdk_modules = [m for m in found["modules"] if m.split(".")[0] in sdk_tops]
    loaded_sdks = sorted({m.split(".")[0] for m in sdk_modules})
    deferred_sdks = sorted(
        top
        for top in sdk_tops - set(loaded_sdks)
        if top not in sys.stdlib_module_names and top not in {"test", "tests"} and not top.startswith("_")
    )

    floors = WORKSPACE / "floors"
    floors.mkdir(parents=True, exist_ok=True)
    floor_module = f"{function.label}_floor"
    (floors / f"{floor_module}.py").write_text(
        floor_source(function, found["clients"], sdk_modules), encoding="utf-8"
    )

    handler: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    for _ in range(runs):  # alternate, so drift in the machine's load hits both alike
        handler.append(_probe(function, path, function.module, discover=False, deferred=True))
        floor.append(_probe(function, [*path, str(floors)], floor_module, discover=False, deferred=False))

    def median(samples: list[dict[str, Any]], key: str) -> float:
        return statistics.median(s[key] for s in samples) * 1000

    result = {
        "handler_cpu_ms": median(handler, "cpu"),
        "floor_cpu_ms": median(floor, "cpu"),
        "handler_wall_ms": median(handler, "wall"),
        "floor_wall_ms": median(floor, "wall"),
        "clients": found["clients"],
        "sdks": loaded_sdks,
        "deferred_sdks": deferred_sdks,
    }
    result["ratio"] = result["handler_cpu_ms"] / result["floor_cpu_ms"]
    result["above_floor"] = above_floor(function, path, floors, floor_module)
    result["xray_at_import"] = any(s["xray_at_import"] for s in handler)
    tracer = [s["deferred_tracer"] for s in handler if "deferred_tracer" in s]
    if tracer:
        result["deferred_tracer_cpu_ms"] = statistics.median(tracer) * 1000
    return result


def _import_times(function: Function, path: list[str], module: str) -> dict[str, int]:
    """Self time (µs) of each module `module` loads, from `python -X importtime` (one run)."""
    code = f"import sys; sys.path[:0] = {path!r}; import {module}"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        env=function.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    times: dict[str, int] = {}
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            times[fields[2].strip()] = int(fields[0])
    return times


def above_floor(function: Function, path: list[str], floors: Path, floor_module: str) -> dict[str, float]:
    """What the handler loads beyond its floor, in ms of `-X importtime` self time per top-level
    package (a module's self time includes what its body runs: pydantic models are built in the
    modules that declare them, the handler module's body nets out the floor module's)."""
    handler = _import_times(function, path, function.module)
    floor = _import_times(function, [*path, str(floors)], floor_module)
    extra: dict[str, float] = {}
    for name, micros in handler.items():
        if name in floor:
            continue
        top = name.split(".")[0]
        key = "(handler module body)" if name == function.module else top
        extra[key] = extra.get(key, 0.0) + micros / 1000
    body = "(handler module body)"
    extra[body] = extra.get(body, 0.0) - floor.get(floor_module, 0) / 1000
    return {k: round(v, 1) for k, v in sorted(extra.items(), key=lambda item: -item[1]) if v >= 0.5}


def cold_start_figures(runs: int = RUNS, only: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """`{"cold_start.<function>.<figure>": {"value", "unit", "how"}}` for every function."""
    wanted = set(only) if only else None
    figures: dict[str, dict[str, Any]] = {}
    how_cpu = (
        f"median of {runs} fresh `python -I -S` interpreters, CPU time of the import (process_time), "
        "Lambda's environment (Tracing: Active, no trace id at init), an artefact view of the venv"
    )
    for function in functions():
        if wanted is not None and function.label not in wanted:
            continue
        measured = measure(function, runs)
        floor_how = (
            f"generated: boto3 + clients {measured['clients']} + provider SDK modules of "
            f"{measured['sdks'] or 'none'} as the handler loads them"
        )
        prefix = f"cold_start.{function.label}"
        figures[f"{prefix}.handler_cpu"] = {
            "value": round(measured["handler_cpu_ms"], 1),
            "unit": "ms",
            "how": how_cpu,
        }
        figures[f"{prefix}.floor_cpu"] = {
            "value": round(measured["floor_cpu_ms"], 1),
            "unit": "ms",
            "how": floor_how,
        }
        figures[f"{prefix}.handler_wall"] = {
            "value": round(measured["handler_wall_ms"], 1),
            "unit": "ms",
            "how": how_cpu.replace("CPU time of the import (process_time)", "wall time of the import"),
        }
        figures[f"{prefix}.floor_wall"] = {
            "value": round(measured["floor_wall_ms"], 1),
            "unit": "ms",
            "how": "wall time of the floor's import, same runs",
        }
        figures[f"{prefix}.ratio"] = {
            "value": round(measured["ratio"], 3),
            "unit": "x floor",
            "how": f"handler CPU / floor CPU; target <= {TARGET_RATIO}",
        }
        figures[f"{prefix}.target_met"] = {
            "value": measured["ratio"] <= TARGET_RATIO,
            "unit": "bool",
            "how": f"ratio <= {TARGET_RATIO}",
        }
        figures[f"{prefix}.deferred_sdks"] = {
            "value": measured["deferred_sdks"],
            "unit": "modules",
            "how": "in the function's requirements.txt, not imported at cold start (loaded on first use)",
        }
        figures[f"{prefix}.above_floor"] = {
            "value": measured["above_floor"],
            "unit": "ms by package",
            "how": "`python -X importtime` self times of the modules the handler loads and its floor does "
            "not, by top-level package (one run; the import-time profiler inflates them)",
        }
        figures[f"{prefix}.xray_sdk_at_import"] = {
            "value": measured["xray_at_import"],
            "unit": "bool",
            "how": "aws_xray_sdk in sys.modules right after the handler's import",
        }
        if "deferred_tracer_cpu_ms" in measured:
            figures[f"{prefix}.deferred_tracer_cpu"] = {
                "value": round(measured["deferred_tracer_cpu_ms"], 1),
                "unit": "ms",
                "how": "CPU to build the X-Ray tracer, paid by the first sampled invocation (decision 031)",
            }
    return figures


def print_cold_starts(figures: dict[str, dict[str, Any]]) -> None:
    labels = sorted({name.split(".")[1] for name in figures if name.startswith("cold_start.")})
    if not labels:
        return
    how = next(iter(figures.values()))["how"]
    print(f"Cold start against its floor ({how})")
    print(f"  {'function':<16} {'handler':>8} {'floor':>8} {'ratio':>6}  target <= {TARGET_RATIO}   deferred")
    for label in labels:

        def get(key: str, label: str = label) -> Any:
            return figures[f"cold_start.{label}.{key}"]["value"]

        deferred = list(get("deferred_sdks"))
        tracer = figures.get(f"cold_start.{label}.deferred_tracer_cpu")
        if tracer:
            deferred.append(f"X-Ray tracer {tracer['value']:.0f} ms at the first sampled invocation")
        print(
            f"  {label:<16} {get('handler_cpu'):6.0f}ms {get('floor_cpu'):6.0f}ms {get('ratio'):6.2f}  "
            f"{'met' if get('target_met') else 'NOT met':<14}  {', '.join(deferred) or '-'}"
        )
        above = get("above_floor")
        if above:
            top = ", ".join(f"{name} {ms:.0f}" for name, ms in list(above.items())[:6])
            print(f"  {'':<16} above the floor (importtime ms): {top}")
    print("  (CPU ms of the import; wall ms in .local/bench.json)")


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(REPO), str(REPO / "layers" / "herald")]
    runs = RUNS
    only = [a for a in argv if not a.startswith("--runs=")]
    for a in argv:
        if a.startswith("--runs="):
            runs = int(a.split("=", 1)[1])
    figures = cold_start_figures(runs, only or None)
    print_cold_starts(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
