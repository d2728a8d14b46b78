"""`make local`: all of Herald on this machine, from template.yaml, on loopback.

- AWS: a moto server (default http://127.0.0.1:4566, `HERALD_AWS_PORT`), Step Functions executing;
- the provider sandboxes (default http://127.0.0.1:4010, `HERALD_SANDBOX_PORT`);
- every resource of the template, provisioned through the SAM transform (local/provision.py);
- the real handlers, invoked in-process as Lambda would (local/runner.py);
- the HTTP API (default http://127.0.0.1:3000, `HERALD_API_PORT`) with its JWT authorizer;
- the demo app page (http://127.0.0.1:4010/demo/): a browser signs in as a demo user and joins the
  Pusher sandbox's WebSocket side (the sandbox port + 1) with the real pusher-js;
- the operator console (http://127.0.0.1:4010/console/), signed in with an admin-scoped token.

The physical names and URLs of every resource are written to `.local/stack.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from local.custom_resources import run_custom_resources
from local.http_api import LocalHttpApi
from local.model import StackDescription
from local.moto_server import MotoServer, aws_client
from local.provision import provision
from local.runner import Runner
from local.sandboxes import SandboxHost
from local.sandboxes.fcm import google_auth_on_loopback

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".local"
logger = logging.getLogger("local.stack")


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    return int(value) if value else default


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalStack:
    """Start, use and stop the whole local system. Ports 0 pick free ones (tests)."""

    def __init__(
        self,
        *,
        aws_port: int | None = None,
        sandbox_port: int | None = None,
        api_port: int | None = None,
        parameters: dict[str, Any] | None = None,
        runner_options: dict[str, Any] | None = None,
        state_file: Path | None = STATE_DIR / "stack.json",
    ) -> None:
        self.aws_port = _port("HERALD_AWS_PORT", 4566) if aws_port is None else aws_port
        self.sandbox_port = _port("HERALD_SANDBOX_PORT", 4010) if sandbox_port is None else sandbox_port
        requested_api = _port("HERALD_API_PORT", 3000) if api_port is None else api_port
        self.api_port = requested_api or _free_port()
        self.parameters = parameters or {}
        self.runner_options = runner_options or {}  # Runner's keyword arguments (local/runner.py)
        self.state_file = state_file
        self.moto: MotoServer | None = None
        self.sandbox: SandboxHost | None = None
        self.description: StackDescription | None = None
        self.runner: Runner | None = None
        self.api: LocalHttpApi | None = None
        self._exit = contextlib.ExitStack()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._exit.enter_context(google_auth_on_loopback())
            self.moto = MotoServer(self.aws_port).start()
            self._exit.callback(self.moto.stop)
            self.sandbox = SandboxHost(port=self.sandbox_port).start()
            self._exit.callback(self.sandbox.stop)
            self.description = provision(
                aws_endpoint=self.moto.url,
                sandbox=self.sandbox,
                parameters=self.parameters,
                api_endpoint=f"http://127.0.0.1:{self.api_port}",
            )
            self.runner = Runner(self.description, **self.runner_options)
            self.runner.start()
            self._exit.callback(self.runner.stop)
            run_custom_resources(self.description, self.runner.invoke)  # schedules.yaml (decision 028)
            self.api = LocalHttpApi(self.description, self.runner.invoke, port=self.api_port).start()
            self._exit.callback(self.api.stop)
            # The Pusher app's webhook URL, as set in Pusher's dashboard: occupancy goes to Herald.
            self.sandbox.pusher.webhook_url = f"{self.api.url}/v1/webhooks/pusher"
            self.sandbox.demo.api_url = self.api.url  # the demo page authorizes its channel there
            self.sandbox.demo.admin_scope = self.description.parameters["AdminScope"]  # the console's
            # SendGrid's Event Webhook URL and the Twilio number's messaging webhook (decision 023)
            self.sandbox.sendgrid.event_webhook_url = f"{self.api.url}/v1/webhooks/sendgrid"
            self.sandbox.twilio.inbound_url = f"{self.api.url}/v1/webhooks/twilio"
            if self.state_file is not None:
                self.description.write(self.state_file)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._exit.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # -- what a user of the stack needs --------------------------------------------------------------

    def client(self, service: str) -> Any:
        assert self.moto is not None
        return aws_client(service, self.moto.url)

    @property
    def bus_name(self) -> str:
        assert self.description is not None
        return self.description.attribute("HeraldBus", "Name")

    def endpoints(self) -> dict[str, str]:
        assert self.moto and self.sandbox and self.api and self.description
        return {
            "aws": self.moto.url,
            "api": self.api.url,
            "sandboxes": self.sandbox.url,
            "demo": f"{self.sandbox.url}/demo/",
            "console": f"{self.sandbox.url}/console/",
            "bus": self.bus_name,
            "stack.json": str(self.state_file) if self.state_file else "",
        }


def seed_demo_users(stack: LocalStack) -> list[str]:
    """Seed the demo users (local/demo.py) and offer the people among them on the demo page."""
    from local.demo import demo_users, seed

    assert stack.sandbox
    seed(stack)
    people = demo_users(f"{stack.sandbox.url}/receivers/acme")  # as seed() made them
    stack.sandbox.demo.users = [p.user_id for p in people if "webhook" not in p.directory]
    return stack.sandbox.demo.users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make local", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (e.g. FallbackDelaySeconds=30)",
    )
    parser.add_argument("--no-seed", action="store_true", help="do not seed the demo users (42, ana, ...)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    parameters = dict(item.split("=", 1) for item in args.parameter)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with LocalStack(parameters=parameters) as stack:
        if not args.no_seed:
            seed_demo_users(stack)
        endpoints = stack.endpoints()
        print("\nHerald local stack is up (Ctrl-C to stop)")
        print(f"  AWS (moto)     {endpoints['aws']}   region us-east-1, any credentials")
        print(f"  HTTP API       {endpoints['api']}   JWT: curl '{endpoints['sandboxes']}/_token?sub=42'")
        print(f"  sandboxes      {endpoints['sandboxes']}   /_outbox /_faults /_token")
        print(f"  event bus      {endpoints['bus']}")
        print(f"  demo app       {endpoints['demo']}   sign in as a demo user; realtime via pusher-js")
        print(f"  console        {endpoints['console']}   operators (a token with the admin scope)")
        print(f"  resources      {endpoints['stack.json']}")
        if not args.no_seed:
            print("  demo users     42, ana, ben, cleo, dan, eve, finn, gus, acme (webhooks): over the bus;")
            print("                 their devices and preferences through the HTTP API (local/demo.py)")
        print("\n  Produce events exactly as on AWS (README, 'The local stack'): put-events on the bus above")
        print(f"  with --endpoint-url {endpoints['aws']}, then watch {endpoints['sandboxes']}/_outbox\n")
        stopped.wait()
        print("\nstopping...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
