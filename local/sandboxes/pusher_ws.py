"""The Pusher sandbox's WebSocket side: Pusher Channels' client protocol (version 7) on loopback.

The real pusher-js (a browser, an app) connects to `ws://127.0.0.1:<port>/app/<key>?protocol=7`
(`wsHost` / `wsPort`, `forceTLS: false`) and speaks to it as to Pusher:

- `pusher:connection_established` with a fresh socket id and `activity_timeout`; a wrong app key is
  refused with `pusher:error` 4001, an unsupported protocol version with 4007 (then the socket
  closes with that code, as Pusher does);
- `pusher:subscribe` to a `private-` channel must carry `auth` = `<key>:<hex HMAC-SHA256(secret,
  socket_id:channel)>` (what Herald's `/v1/pusher/auth` answers through the pusher SDK); a missing
  or wrong one is refused with `pusher:error` 4009 and no subscription. Public channels need no
  auth. Presence and encrypted channels are not emulated (refused with a `pusher:error` that says
  so). Success: `pusher_internal:subscription_succeeded`;
- `pusher:ping` → `pusher:pong`; `pusher:unsubscribe`; client events are refused (they are off
  unless enabled in Pusher's dashboard);
- every event the HTTP API triggers (`POST /apps/<id>/events`, `/batch_events`) is sent to each
  socket subscribed to its channel as `{"event", "channel", "data": "<the JSON string>"}`.

Occupancy has one source of truth, `PusherSandbox.subscribe` / `unsubscribe`: a socket's first
subscription to a channel counts as one subscriber, its unsubscribe or its closing (a page closed)
as one leaving, so the signed `channel_occupied` / `channel_vacated` webhooks are the ones the HTTP
helpers (`/_pusher/connect|disconnect`) send, with the same batching and vacate delay.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HandshakeRequest
from websockets.http11 import Response as HandshakeResponse
from websockets.sync.server import Server, ServerConnection, serve

from local.sandboxes.pusher_channels import CHANNEL_NAME, PusherSandbox
from local.sandboxes.web import is_loopback_url, logger

PROTOCOL_VERSIONS = frozenset({"5", "6", "7"})  # what Pusher accepts; pusher-js 8 speaks 7
ACTIVITY_TIMEOUT_SECONDS = 120  # Pusher's: a client pings after this long without a message
APP_PATH = "/app/"

# Pusher's error codes (its protocol documentation): 4001 unknown app key, 4007 unsupported
# protocol version, 4009 not authorized; 4200-4299 ask the client to reconnect at once.
UNKNOWN_APP = 4001
UNSUPPORTED_PROTOCOL = 4007
UNAUTHORIZED = 4009
RECONNECT = 4200


@dataclass(eq=False)
class _Client:
    """One open socket: its id and the channels it is subscribed to."""

    connection: ServerConnection
    socket_id: str
    channels: set[str] = field(default_factory=set)


def _message(event: str, data: Any, channel: str | None = None) -> str:
    """A server → client frame; `data` goes out as a JSON string, as Pusher sends it."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return json.dumps(frame, separators=(",", ":"))


def _error(code: int | None, message: str) -> str:
    """`pusher:error`: Pusher sends its data as an object, `{"code", "message"}`."""
    return json.dumps({"event": "pusher:error", "data": {"code": code, "message": message}})


def new_socket_id() -> str:
    """`<digits>.<digits>`, the shape the pusher SDK's `validate_socket_id` accepts."""
    return f"{secrets.randbelow(10**9) + 1}.{secrets.randbelow(10**9) + 1}"


class PusherSocketServer:
    """A `websockets` server (threads, no event loop) for `sandbox`'s app, on loopback.

    The socket is bound at construction (port 0 picks a free one), `start()` serves in a daemon
    thread, `stop()` closes every socket (code 1001) and waits for their handlers.
    """

    def __init__(self, sandbox: PusherSandbox, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback_url(f"http://{host}/"):
            raise ValueError(f"the Pusher sandbox only listens on loopback, not {host!r}")
        self.sandbox = sandbox
        self._clients: dict[str, _Client] = {}  # socket id -> client
        self._lock = threading.Lock()
        self._server: Server = serve(
            self._serve_connection, host, port, process_request=self._check_path, logger=logger
        )
        self.host = host
        self.port: int = int(self._server.socket.getsockname()[1])
        self.url = f"ws://{host}:{self.port}"
        self._thread: threading.Thread | None = None
        sandbox.attach_sockets(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=f"pusher-ws:{self.port}", daemon=True
            )
            self._thread.start()
            logger.info("Pusher WebSocket protocol on %s/app/%s", self.url, self.sandbox.credentials.key)
        return self

    def stop(self) -> None:
        self._server.shutdown()  # idempotent; closes the sockets and waits for their handlers
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- what the HTTP side and the tests see ------------------------------------------------

    def sockets(self) -> dict[str, list[str]]:
        """Each open socket's id and its channels."""
        with self._lock:
            return {socket_id: sorted(client.channels) for socket_id, client in self._clients.items()}

    def publish(self, channel: str, event: str, data: str) -> int:
        with self._lock:
            targets = [client for client in self._clients.values() if channel in client.channels]
        frame = _message(event, data, channel)
        sent = 0
        for client in targets:
            try:
                client.connection.send(frame)
                sent += 1
            except ConnectionClosed:
                pass  # closing: its handler unsubscribes it
        return sent

    def drop_all(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            for client in clients:
                client.channels.clear()
        for client in clients:
            client.connection.close(RECONNECT, "sandbox reset")

    # -- the protocol ------------------------------------------------------------------------

    def _check_path(
        self, connection: ServerConnection, request: HandshakeRequest
    ) -> HandshakeResponse | None:
        if not urlsplit(request.path).path.startswith(APP_PATH):
            return connection.respond(404, "Not Found: connect to /app/<key>\n")
        return None

    def _serve_connection(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        parts = urlsplit(connection.request.path)
        key = parts.path[len(APP_PATH) :]
        protocol = parse_qs(parts.query).get("protocol", [""])[0]
        if key != self.sandbox.credentials.key:
            self._refuse(connection, UNKNOWN_APP, f"App key {key} not in this cluster")
            return
        if protocol not in PROTOCOL_VERSIONS:
            self._refuse(connection, UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {protocol!r}")
            return
        client = _Client(connection, new_socket_id())
        with self._lock:
            self._clients[client.socket_id] = client
        logger.info("pusher socket %s connected", client.socket_id)
        try:
            connection.send(
                _message(
                    "pusher:connection_established",
                    {"socket_id": client.socket_id, "activity_timeout": ACTIVITY_TIMEOUT_SECONDS},
                )
            )
            for text in connection:
                self._on_message(client, text)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._clients.pop(client.socket_id, None)
                channels, client.channels = client.channels, set()
            for channel in sorted(channels):
                self._leave(channel)
            logger.info("pusher socket %s closed (%s channels left)", client.socket_id, len(channels))

    @staticmethod
    def _refuse(connection: ServerConnection, code: int, message: str) -> None:
        try:
            connection.send(_error(code, message))
            connection.close(code, message)
        except ConnectionClosed:
            pass

    def _on_message(self, client: _Client, text: str | bytes) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            client.connection.send(_error(None, "Invalid JSON"))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
            client.connection.send(_error(None, "Each message must be an object with an event"))
            return
        event, data = frame["event"], frame.get("data")
        if isinstance(data, str):  # pusher-js sends objects; a JSON string is accepted too
            try:
                data = json.loads(data)
            except ValueError:
                data = {}
        data = data if isinstance(data, dict) else {}
        if event == "pusher:ping":
            client.connection.send(_message("pusher:pong", {}))
        elif event == "pusher:subscribe":
            self._subscribe(client, data)
        elif event == "pusher:unsubscribe":
            self._unsubscribe(client, str(data.get("channel", "")))
        elif event.startswith("client-"):
            client.connection.send(
                _error(None, "To send client events, you must enable this feature in the Settings page")
            )

    def _subscribe(self, client: _Client, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        if not isinstance(channel, str) or not CHANNEL_NAME.match(channel):
            client.connection.send(_error(None, f"Invalid channel name: {channel!r}"))
            return
        if channel.startswith(("presence-", "private-encrypted-")):
            client.connection.send(
                _error(UNAUTHORIZED, f"{channel}: presence and encrypted channels are not emulated")
            )
            return
        if channel.startswith("private-"):
            expected = self.sandbox.channel_auth(client.socket_id, channel)
            given = data.get("auth")
            if not isinstance(given, str) or not hmac.compare_digest(given, expected):
                logger.info("pusher socket %s refused %s: bad auth", client.socket_id, channel)
                client.connection.send(
                    _error(
                        UNAUTHORIZED,
                        f"Invalid signature: Expected HMAC SHA256 hex digest of "
                        f"{client.socket_id}:{channel}, but got {given!r}",
                    )
                )
                return
        with self._lock:
            if self._clients.get(client.socket_id) is not client:
                return  # dropped by a reset meanwhile
            first = channel not in client.channels
            client.channels.add(channel)
        client.connection.send(_message("pusher_internal:subscription_succeeded", {}, channel))
        if first:
            self.sandbox.subscribe(channel)
            logger.info("pusher socket %s subscribed to %s", client.socket_id, channel)

    def _unsubscribe(self, client: _Client, channel: str) -> None:
        with self._lock:
            subscribed = channel in client.channels
            client.channels.discard(channel)
        if subscribed:
            self._leave(channel)
            logger.info("pusher socket %s unsubscribed from %s", client.socket_id, channel)

    def _leave(self, channel: str) -> None:
        with contextlib.suppress(LookupError):  # already emptied by `/_pusher/vacate` or a reset
            self.sandbox.unsubscribe(channel)
