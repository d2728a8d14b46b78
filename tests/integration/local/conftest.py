"""Fixtures for the local stack's provisioner and HTTP API: a moto server and a sandbox host on
free loopback ports (one of each per test module)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.moto_server import MotoServer
from local.sandboxes import SandboxHost

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    """A moto server for the module. moto's backends are per process, not per server: they are
    reset when the module ends so the next module starts from an empty AWS."""
    server = MotoServer(port=0).start()
    try:
        yield server
    finally:
        try:
            server.reset()
        finally:
            server.stop()


@pytest.fixture(scope="module")
def endpoint(aws: MotoServer) -> str:
    return aws.url


@pytest.fixture
def clients(endpoint: str) -> Callable[[str], Any]:
    """boto3 clients on the module's moto server (dummy credentials, us-east-1)."""
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHost]:
    host = SandboxHost(port=0).start()
    try:
        yield host
    finally:
        host.stop()
