"""`python -m local.sandboxes`: serve every sandbox in the foreground until Ctrl-C (or SIGTERM).

Prints the endpoints, credentials and Herald's secret values as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from local.sandboxes.credentials import SandboxCredentials
from local.sandboxes.host import DEFAULT_PORT, SandboxHost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sandboxes", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0 picks a free one)")
    parser.add_argument(
        "--credentials",
        type=Path,
        help="JSON file: loaded when it exists (keeps keys stable across runs), else written",
    )
    parser.add_argument("--pusher-webhook-url", help="loopback URL for Pusher occupancy webhooks")
    parser.add_argument("--receiver", action="append", default=[], help="webhook receiver name (repeatable)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    credentials = None
    if args.credentials and args.credentials.exists():
        credentials = SandboxCredentials.from_dict(json.loads(args.credentials.read_text()))
    host = SandboxHost(
        credentials,
        host=args.host,
        port=args.port,
        pusher_webhook_url=args.pusher_webhook_url,
        receivers=args.receiver or ("default",),
    )
    if args.credentials and credentials is None:
        args.credentials.write_text(json.dumps(host.credentials.to_dict(), indent=2))
        args.credentials.chmod(0o600)
    # Ctrl-C or a TERM stops it cleanly, also when started from a script in the background (where
    # the shell makes it ignore SIGINT, and Python then installs no KeyboardInterrupt for it).
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    host.start()
    print(json.dumps(host.describe(), indent=2), flush=True)
    try:
        stopped.wait()
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
