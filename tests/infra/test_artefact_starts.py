"""The artefact starts: what `sam build` produces imports on Lambda (issue 7, item 1).

Every other test runs in the dev venv, which has every package any requirements file names, so a
dependency missing from the artefact shows up only on AWS. Here each function's handler module is
imported the way the python3.13 runtime imports it: a bare `python3.13 -I -S` (no site, no venv)
whose `sys.path` is the function's build folder (/var/task), the built layer (/opt/python) and the
libraries the managed runtime ships (boto3, botocore and their dependencies), in that order, with
the environment Lambda would give it (Tracing: Active, the template's variables resolved to
placeholders). The module's cold-start code runs: settings validate, clients are built; the X-Ray SDK
is not loaded until an invocation is sampled, and then powertools' Tracer patches botocore through
it (decision 031).

The build is for the host's architecture (native wheels must load here), from a copy of
template.yaml with the architecture swapped, in its own reused workspace .local/host-build/
(`sam build --cached`, skipped when nothing it reads changed). The arm64 build and its ELF audit
are test_build.py. Decision 006.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.metadata
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import REPO_ROOT, TEMPLATE_PATH, describe, run, tool
from tests.infra.helpers import resources_of
from tests.infra.lambda_environment import function_property, lambda_environment
from tools.cfn_yaml import load_template

pytestmark = [pytest.mark.infra, pytest.mark.slow]

WORKSPACE = REPO_ROOT / ".local" / "host-build"
PROBE = Path(__file__).with_name("import_probe.py")
LAYER = "HeraldLayer"
# What the managed python3.13 runtime ships besides the standard library (boto3 and its runtime
# dependencies), as distributions of the dev venv.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
TEMPLATE = load_template(TEMPLATE_PATH)
FUNCTIONS = sorted(resources_of(TEMPLATE, "AWS::Serverless::Function"))


def host_architecture() -> str:
    machine = platform.machine().lower()
    architectures = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
    if machine not in architectures:
        pytest.fail(f"no Lambda architecture matches this host ({machine})")
    return architectures[machine]


def host_template(template: dict[str, Any], architecture: str) -> dict[str, Any]:
    """template.yaml for `architecture`, with local paths absolute (the copy lives elsewhere)."""
    host = copy.deepcopy(template)
    function_globals = host.get("Globals", {}).get("Function", {})
    if "Architectures" in function_globals:
        function_globals["Architectures"] = [architecture]
    for logical_id, resource in host["Resources"].items():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if key in properties:
                assert isinstance(properties[key], str), f"{logical_id}.{key} is not a local path"
                properties[key] = str((REPO_ROOT / properties[key]).resolve())
        if "Architectures" in properties:
            properties["Architectures"] = [architecture]
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            if "CompatibleArchitectures" in properties:
                properties["CompatibleArchitectures"] = [architecture]
            resource.setdefault("Metadata", {})["BuildArchitecture"] = architecture
    return host


def write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def assemble_runtime_libraries(target: Path) -> None:
    """Copy boto3, botocore and their dependencies (files and metadata) out of the dev venv into
    `target`, once per set of versions."""
    distributions = [importlib.metadata.distribution(name) for name in RUNTIME_DISTRIBUTIONS]
    stamp = json.dumps({d.metadata["Name"]: d.version for d in distributions}, sort_keys=True)
    stamp_file = target / ".versions.json"
    if stamp_file.is_file() and stamp_file.read_text(encoding="utf-8") == stamp:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for distribution in distributions:
        for file in distribution.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts outside site-packages; caches are rebuilt on use
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(distribution.locate_file(file), destination)
    stamp_file.write_text(stamp, encoding="utf-8")


def build_fingerprint(template_text: str, template: dict[str, Any]) -> str:
    """What the build depends on: the host template, the SAM CLI version and every file under the
    functions' and layers' source folders (requirements included)."""
    digest = hashlib.sha256(template_text.encode())
    digest.update(importlib.metadata.version("aws-sam-cli").encode())
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if key not in properties:
                continue
            root = Path(properties[key])
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                if "__pycache__" in file.parts:
                    continue
                digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def host_build() -> Iterator[Path]:
    """`sam build` of the host-architecture template; yields the build directory (under a lock,
    so a concurrent run neither rebuilds nor reads it halfway). For Python, `sam build --cached`
    still copies every dependency into the build on each run (its incremental strategy), which
    takes 5-15 s here: when nothing it reads has changed, the previous build is reused as is."""
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    template_file = WORKSPACE / "template.json"
    target = WORKSPACE / "build"
    stamp = WORKSPACE / "build.fingerprint"
    with (WORKSPACE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        host = host_template(TEMPLATE, host_architecture())
        template_text = json.dumps(host, indent=1)
        write_if_changed(template_file, template_text)
        fingerprint = build_fingerprint(template_text, host)
        if not (target.is_dir() and stamp.is_file() and stamp.read_text(encoding="utf-8") == fingerprint):
            stamp.unlink(missing_ok=True)
            result = run(
                [
                    tool("sam"),
                    "build",
                    "--template-file",
                    str(template_file),
                    "--build-dir",
                    str(target),
                    "--cache-dir",
                    str(WORKSPACE / "cache"),
                    "--cached",
                    "--parallel",
                ],
                timeout=600,
                cwd=WORKSPACE,  # sam keeps its dependency cache in <cwd>/.aws-sam/deps
                # the push sender's own makefile build picks its wheels by this (decision 036)
                env={"HERALD_LAMBDA_ARCH": "x86_64" if host_architecture() == "x86_64" else "arm64"},
            )
            assert result.returncode == 0, f"sam build (host architecture) failed:\n{describe(result)}"
            stamp.write_text(fingerprint, encoding="utf-8")
        assemble_runtime_libraries(WORKSPACE / "runtime")
        yield target


def installed(folder: Path) -> dict[str, str]:
    """Distribution name (normalised) -> version of what pip installed into `folder`."""
    return {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
        for dist in importlib.metadata.distributions(path=[str(folder)])
    }


def python313() -> str:
    """The base interpreter behind this venv (a venv's python with -S has no site-packages either,
    but nothing of the venv should be near the probe)."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    assert sys.version_info[:2] == (3, 13), f"the tests run on {sys.version}, not Python 3.13"
    return str(base)


def first_lines_of_trouble(stderr: str, module: str) -> str:
    """The reason in one line: a dependency missing from the artefact, a code error, or the probe's."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        missing = re.match(r"ModuleNotFoundError: No module named '([^']+)'", line)
        if missing:
            top = missing.group(1).split(".")[0]
            if top in ("herald", module):
                return f"the code imports a module of its own that does not exist: {line}"
            return f"a dependency is missing from the artefact (add it to a requirements.txt): {line}"
    reasons = [line for line in lines if line.startswith("import_probe:")]
    return (reasons or lines or ["no output on stderr"])[-1]


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_handler_module_imports_as_lambda_loads_it(host_build: Path, logical_id: str) -> None:
    # GIVEN the function's build folder, the built layer and the runtime's own libraries
    task_root = host_build / logical_id
    opt = host_build / LAYER
    runtime_libraries = WORKSPACE / "runtime"
    assert (task_root / "app.py").is_file(), f"sam build produced no {logical_id}/app.py in {host_build}"
    assert (opt / "python" / "herald" / "__init__.py").is_file(), (
        f"the built layer has no python/herald in {opt}"
    )
    handler = str(function_property(TEMPLATE, logical_id, "Handler"))
    module, _, attribute = handler.rpartition(".")
    tracing_active = function_property(TEMPLATE, logical_id, "Tracing") == "Active"
    layers = json.dumps(function_property(TEMPLATE, logical_id, "Layers"))
    assert LAYER in layers, f"{logical_id} does not use {LAYER} ({layers}): this test mounts it as /opt"
    environment = lambda_environment(
        TEMPLATE,
        logical_id,
        task_root=task_root,
        opt=opt,
        runtime_dir=runtime_libraries,
        tracing_active=tracing_active,
    )
    spec = {
        "path": [str(task_root), str(opt / "python"), str(runtime_libraries)],
        "module": module,
        "handler": attribute,
        "expect_tracing": tracing_active,
        # what the runtime sets for an invocation X-Ray samples (at init there is none: decision 031)
        "sampled_trace_header": environment.pop("_X_AMZN_TRACE_ID", ""),
    }

    # WHEN a bare Python 3.13 imports the handler module with Lambda's environment
    result = subprocess.run(
        [python313(), "-I", "-S", str(PROBE), json.dumps(spec)],
        cwd=task_root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN the module loads from the artefact alone, its handler exists and the Tracer is live
    reason = first_lines_of_trouble(result.stderr, module)
    assert result.returncode == 0, (
        f"{logical_id} ({handler}) does not start on Lambda: {reason}\n"
        f"--- stderr of the import ---\n{result.stderr.strip()[-6000:]}"
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module_file"] == str((task_root / f"{module}.py").resolve()), report
    if tracing_active:
        assert "botocore" in report["patched"], report


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_function_and_layer_agree_on_what_both_ship(host_build: Path, logical_id: str) -> None:
    """Each function's requirements are resolved without the layer's: a package both install (urllib3,
    six, typing-extensions...) is imported from the function's copy, also by the layer's code."""
    # GIVEN what sam build installed into the function and into the layer
    own, layer = installed(host_build / logical_id), installed(host_build / LAYER / "python")
    assert layer, f"no distributions found in the built layer: is {host_build / LAYER / 'python'} right?"

    # WHEN a distribution is in both
    shared = own.keys() & layer.keys()
    differing = {name: (own[name], layer[name]) for name in shared if own[name] != layer[name]}

    # THEN both carry the same version (pin it in the function's requirements when they drift)
    assert not differing, f"{logical_id} shadows the layer's version of: " + ", ".join(
        f"{name} {mine} (layer {theirs})" for name, (mine, theirs) in sorted(differing.items())
    )


FCM_PATH_PROBE = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials, messaging
import firebase_admin, google.auth.transport.requests, httpx  # what the FCM client builds on
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
account = {"type": "service_account", "project_id": "p", "private_key_id": "k",
           "private_key": pem.decode(), "client_email": "fcm@p.iam.gserviceaccount.com",
           "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}
assertion = credentials.Certificate(account).get_credential()._make_authorization_grant_assertion()
body = messaging._MessagingService.encode_message(
    messaging.Message(token="t", notification=messaging.Notification(title="a", body="b")))
modules = sorted(m.split(".")[0] for m in sys.modules)
print(json.dumps({"assertion": assertion.count(b"."), "token": body["token"],
                  "loaded": [m for m in ("grpc", "google.cloud", "google.api_core") if m in sys.modules]}))
"""


def test_the_push_artefact_signs_and_encodes_an_fcm_message_without_the_packages_it_leaves_out(
    host_build: Path,
) -> None:
    """Decision 036: the push sender's own build leaves firebase-admin's Firestore, Storage and gRPC
    dependencies out; what its FCM path does before the request — the service account's JWT signed
    with cryptography, the message encoded — must work from the artefact alone."""
    # GIVEN the push sender's artefact, the built layer and the runtime's libraries
    task_root = host_build / "PushSenderFunction"
    path = [str(task_root), str(host_build / LAYER / "python"), str(WORKSPACE / "runtime")]
    assert not (task_root / "grpc").exists() and not (task_root / "google" / "cloud").exists()

    # WHEN a bare Python 3.13 signs an OAuth assertion and encodes a message with it
    result = subprocess.run(
        [python313(), "-I", "-S", "-c", FCM_PATH_PROBE, json.dumps(path)],
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN both work, without gRPC or the Cloud clients
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"assertion": 2, "token": "t", "loaded": []}


def test_the_push_artefacts_pins_are_what_the_tests_run_with() -> None:
    """requirements-lambda.txt (installed without resolution, decision 036) pins the versions the dev
    venv has, and the same firebase-admin as requirements.txt."""
    folder = REPO_ROOT / "functions" / "push_sender"
    pins = dict(
        line.split("==", 1)
        for line in (folder / "requirements-lambda.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    installed = {name: importlib.metadata.version(name) for name in pins}
    assert installed == pins, "requirements-lambda.txt pins other versions than the tests run with"
    requirements = (folder / "requirements.txt").read_text(encoding="utf-8")
    assert f"firebase-admin=={pins['firebase-admin']}" in requirements
    makefile = (folder / "Makefile").read_text(encoding="utf-8")
    architecture = str(function_property(TEMPLATE, "PushSenderFunction", "Architectures") or ["x86_64"])
    assert ("arm64" in architecture) == ("x86_64,aarch64)" in makefile), "the Makefile's default wheels"
