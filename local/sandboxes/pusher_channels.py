"""Pusher Channels HTTP API sandbox: signed triggers, channel info, occupancy webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from local.sandboxes.credentials import PusherCredentials
from local.sandboxes.outbox import Outbox
from local.sandboxes.web import (
    ControlError,
    Route,
    WebhookDelivery,
    control_json,
    json_response,
    post_loopback,
    require_loopback_url,
    text_response,
)

CHANNEL_NAME = re.compile(r"^[-a-zA-Z0-9_=@,.;]{1,164}$")
TIMESTAMP_GRACE_SECONDS = 600
MAX_DATA_BYTES = 10_240
MAX_CHANNELS = 100
MAX_BATCH = 10
MAX_EVENT_NAME = 200
USER_CHANNEL_PREFIX = "private-user-"
DEFAULT_VACATE_DELAY_SECONDS = 3.0  # Pusher holds `channel_vacated` back a few seconds
DEFAULT_BATCH_WINDOW_SECONDS = 0.05  # events this close together share one webhook body


class PusherError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def user_channel(user_id: str) -> str:
    """The channel an app of `user_id` subscribes to."""
    return f"{USER_CHANNEL_PREFIX}{user_id}"


def _daemon_timer(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(max(seconds, 0.0), action)
    timer.daemon = True
    timer.start()
    return timer


class Sockets(Protocol):
    """The sandbox's WebSocket side (`pusher_ws.PusherSocketServer`), as the HTTP side sees it."""

    def publish(self, channel: str, event: str, data: str) -> int:
        """Send an event to every socket subscribed to `channel`; returns how many got it."""
        ...

    def drop_all(self) -> None:
        """Forget every subscription and close every socket (the sandbox is being reset)."""
        ...


class PusherSandbox:
    """Speaks `api-<cluster>.pusher.com`'s REST API; errors are plain text, as Pusher's are."""

    name = "pusher"

    def __init__(
        self,
        credentials: PusherCredentials,
        outbox: Outbox,
        webhook_url: str | None = None,
        vacate_delay_seconds: float = DEFAULT_VACATE_DELAY_SECONDS,
        batch_window_seconds: float = DEFAULT_BATCH_WINDOW_SECONDS,
    ) -> None:
        self.credentials = credentials
        self.outbox = outbox
        self.vacate_delay_seconds = vacate_delay_seconds
        self.batch_window_seconds = batch_window_seconds
        self._subscriptions: dict[str, int] = {}
        self._webhook_url: str | None = None
        self._webhooks: list[WebhookDelivery] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one batch on the wire at a time, in order
        self._vacating: dict[str, threading.Timer] = {}  # channel -> its delayed channel_vacated
        self._queued: list[dict[str, str]] = []  # events waiting for the batch window to close
        self._flush_timer: threading.Timer | None = None
        self._sockets: Sockets | None = None  # real clients (pusher_ws.py), once attached
        self.webhook_url = webhook_url

    # -- configuration and state -------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._webhook_url = require_loopback_url(url) if url else None

    def attach_sockets(self, sockets: Sockets) -> None:
        """Triggered events also go to `sockets`' subscribers; `reset` closes them."""
        self._sockets = sockets

    def channel_auth(self, socket_id: str, channel: str, channel_data: str | None = None) -> str:
        """The `auth` a `pusher:subscribe` must carry: `<key>:<hex HMAC-SHA256(secret,
        socket_id:channel[:channel_data])>`, the pusher SDK's `authenticate` formula."""
        text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
        return f"{self.credentials.key}:{sign(self.credentials.secret, text)}"

    def is_occupied(self, channel: str) -> bool:
        with self._lock:
            return self._subscriptions.get(channel, 0) > 0

    def occupied_channels(self) -> dict[str, int]:
        with self._lock:
            return {name: count for name, count in self._subscriptions.items() if count > 0}

    def occupy(self, channel: str, subscribers: int = 1) -> WebhookDelivery | None:
        """Clients subscribe. On vacant → occupied a `channel_occupied` webhook is sent at once
        (returned), unless the channel was only waiting out its vacate delay."""
        self._check_channel(channel)
        with self._lock:
            was = self._subscriptions.get(channel, 0)
            self._subscriptions[channel] = was + max(subscribers, 1)
            resumed = self._cancel_vacating_locked(channel)
        return self._send_webhook("channel_occupied", channel) if was == 0 and not resumed else None

    def vacate(self, channel: str) -> WebhookDelivery | None:
        """Every client leaves. On occupied → vacant a `channel_vacated` webhook is sent at once
        (returned), without the delay `disconnect` has."""
        self._check_channel(channel)
        with self._lock:
            was = self._subscriptions.pop(channel, 0)
            pending = self._cancel_vacating_locked(channel)
        return self._send_webhook("channel_vacated", channel) if was > 0 or pending else None

    def connect(self, user_id: str) -> int:
        """An app of `user_id` subscribes to its `private-user-<id>` channel; returns the channel's
        connections (see `subscribe`)."""
        return self.subscribe(user_channel(user_id))

    def disconnect(self, user_id: str) -> int:
        """One app of `user_id` leaves its channel; returns the connections left (see `unsubscribe`)."""
        try:
            return self.unsubscribe(user_channel(user_id))
        except LookupError:
            raise LookupError(f"user {user_id!r} has no connection") from None

    def subscribe(self, channel: str) -> int:
        """One more subscriber on `channel` (an app's connection, or a real socket: pusher_ws.py);
        returns its subscribers. The first one queues `channel_occupied` for the next batch; one
        arriving while a vacate is pending cancels it, and no webhook is sent at all (as Pusher does)."""
        self._check_channel(channel)
        with self._lock:
            was = self._subscriptions.get(channel, 0)
            self._subscriptions[channel] = was + 1
            if was == 0 and not self._cancel_vacating_locked(channel):
                self._enqueue_locked({"name": "channel_occupied", "channel": channel})
            return was + 1

    def unsubscribe(self, channel: str) -> int:
        """One subscriber leaves `channel`; returns the subscribers left (LookupError: there was
        none). When the last leaves, `channel_vacated` is sent `vacate_delay_seconds` later (if
        nobody subscribes again by then)."""
        self._check_channel(channel)
        with self._lock:
            was = self._subscriptions.get(channel, 0)
            if was == 0:
                raise LookupError(f"channel {channel!r} has no subscriber")
            if was > 1:
                self._subscriptions[channel] = was - 1
                return was - 1
            del self._subscriptions[channel]
            if self.vacate_delay_seconds <= 0:
                self._enqueue_locked({"name": "channel_vacated", "channel": channel})
            else:
                timer = threading.Timer(self.vacate_delay_seconds, lambda: self._vacate_due(channel, timer))
                timer.daemon = True
                self._vacating[channel] = timer
                timer.start()
            return 0

    def vacating_channels(self) -> list[str]:
        """Channels whose last member left and whose `channel_vacated` is still held back."""
        with self._lock:
            return sorted(self._vacating)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no vacate is pending and every queued event has been delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._vacating and not self._queued and self._flush_timer is None
            if idle and not self._send_lock.locked():
                return True
            time.sleep(0.01)
        return False

    def webhooks_sent(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._webhooks)

    def reset(self) -> None:
        if self._sockets is not None:
            self._sockets.drop_all()  # first: a closing socket then has nothing left to unsubscribe
        with self._lock:
            self._subscriptions.clear()
            self._webhooks.clear()
            for timer in self._vacating.values():
                timer.cancel()
            self._vacating.clear()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            self._queued.clear()

    def webhook_request(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """A webhook body and headers exactly as Pusher signs them."""
        body = json.dumps({"time_ms": int(time.time() * 1000), "events": events}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Pusher-Key": self.credentials.key,
            "X-Pusher-Signature": hmac.new(
                self.credentials.secret.encode(), body, hashlib.sha256
            ).hexdigest(),
        }
        return body, headers

    def _send_webhook(self, name: str, channel: str) -> WebhookDelivery | None:
        return self._post_events([{"name": name, "channel": channel}])

    def _post_events(self, events: list[dict[str, str]]) -> WebhookDelivery | None:
        url = self._webhook_url
        if not url or not events:
            return None
        body, headers = self.webhook_request(events)
        delivery = post_loopback(url, body, headers)
        with self._lock:
            self._webhooks.append(delivery)
        return delivery

    def _cancel_vacating_locked(self, channel: str) -> bool:
        timer = self._vacating.pop(channel, None)
        if timer is not None:
            timer.cancel()
        return timer is not None

    def _vacate_due(self, channel: str, timer: threading.Timer) -> None:
        with self._lock:
            if self._vacating.get(channel) is not timer:
                return  # a reconnect (or reset) got there first
            del self._vacating[channel]
            self._enqueue_locked({"name": "channel_vacated", "channel": channel})

    def _enqueue_locked(self, event: dict[str, str]) -> None:
        """Queue an event for the open batch (none is sent while no webhook URL is configured)."""
        if not self._webhook_url:
            return
        self._queued.append(event)
        if self._flush_timer is None:
            self._flush_timer = _daemon_timer(self.batch_window_seconds, self._flush)

    def _flush(self) -> None:
        with self._send_lock:
            with self._lock:
                events, self._queued = self._queued, []
                self._flush_timer = None
            self._post_events(events)

    @staticmethod
    def _check_channel(channel: str) -> None:
        if not CHANNEL_NAME.match(channel):
            raise ValueError(f"invalid Pusher channel name: {channel!r}")

    # -- HTTP --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/apps/<app_id>/events", ("POST",), self._trigger, "pusher", self._recipients),
            Route("/apps/<app_id>/batch_events", ("POST",), self._batch, "pusher", self._recipients),
            Route("/apps/<app_id>/channels", ("GET",), self._channels, "pusher"),
            Route("/apps/<app_id>/channels/<channel>", ("GET",), self._channel, "pusher", self._recipients),
            Route("/_pusher/channels", ("GET",), self._control_channels),
            Route("/_pusher/occupy", ("POST",), self._control_occupy),
            Route("/_pusher/vacate", ("POST",), self._control_vacate),
            Route("/_pusher/connect", ("POST",), self._control_connect),
            Route("/_pusher/disconnect", ("POST",), self._control_disconnect),
            Route("/_pusher/config", ("GET", "PUT", "POST"), self._control_config),
            Route("/_pusher/webhook_url", ("PUT", "POST"), self._control_webhook_url),
            Route("/_pusher/webhooks", ("GET",), self._control_webhooks),
        ]

    def _control_channels(self, request: Request, args: dict[str, str]) -> Response:
        return json_response({"channels": self.occupied_channels(), "webhook_url": self.webhook_url})

    def _control_occupy(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "channel")
        delivery = self._guard(lambda: self.occupy(str(data["channel"]), int(data.get("subscribers", 1))))
        return json_response({"occupied": True, "webhook": delivery.to_dict() if delivery else None})

    def _control_vacate(self, request: Request, args: dict[str, str]) -> Response:
        data = control_json(request, "channel")
        delivery = self._guard(lambda: self.vacate(str(data["channel"])))
        return json_response({"occupied": False, "webhook": delivery.to_dict() if delivery else None})

    def _control_connect(self, request: Request, args: dict[str, str]) -> Response:
        user_id = str(control_json(request, "user_id")["user_id"])
        connections = self._guard(lambda: self.connect(user_id))
        return json_response(
            {"user_id": user_id, "channel": user_channel(user_id), "connections": connections}
        )

    def _control_disconnect(self, request: Request, args: dict[str, str]) -> Response:
        user_id = str(control_json(request, "user_id")["user_id"])
        try:
            connections = self._guard(lambda: self.disconnect(user_id))
        except LookupError as error:
            raise ControlError(str(error), status=409) from None
        vacated_in = int(self.vacate_delay_seconds * 1000) if connections == 0 else None
        return json_response(
            {
                "user_id": user_id,
                "channel": user_channel(user_id),
                "connections": connections,
                "vacated_in_ms": vacated_in,
            }
        )

    def _control_config(self, request: Request, args: dict[str, str]) -> Response:
        if request.method != "GET":
            data = control_json(request)
            try:
                delay = float(data.get("vacate_delay_ms", self.vacate_delay_seconds * 1000))
                window = float(data.get("batch_window_ms", self.batch_window_seconds * 1000))
            except (TypeError, ValueError):
                raise ControlError("vacate_delay_ms and batch_window_ms must be numbers") from None
            if delay < 0 or window < 0:
                raise ControlError("vacate_delay_ms and batch_window_ms must not be negative")
            self.vacate_delay_seconds, self.batch_window_seconds = delay / 1000, window / 1000
        return json_response(
            {
                "vacate_delay_ms": int(self.vacate_delay_seconds * 1000),
                "batch_window_ms": int(self.batch_window_seconds * 1000),
            }
        )

    def _control_webhook_url(self, request: Request, args: dict[str, str]) -> Response:
        url = control_json(request).get("url")
        self._guard(lambda: setattr(self, "webhook_url", url))
        return json_response({"webhook_url": self.webhook_url})

    def _control_webhooks(self, request: Request, args: dict[str, str]) -> Response:
        return json_response([delivery.to_dict() for delivery in self.webhooks_sent()])

    @staticmethod
    def _guard[T](action: Callable[[], T]) -> T:
        try:
            return action()
        except ValueError as error:
            raise ControlError(str(error)) from None

    def fault_response(self, status: int) -> Response:
        messages = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        return text_response(messages.get(status, f"Error {status}") + "\n", status)

    @staticmethod
    def _recipients(request: Request, args: dict[str, str]) -> list[str]:
        if "channel" in args:
            return [args["channel"]]
        try:
            data = json.loads(request.get_data(cache=True) or b"{}")
        except ValueError:
            return []
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("batch"), list):
            return [str(item.get("channel")) for item in data["batch"] if isinstance(item, dict)]
        channels = data.get("channels") or ([data["channel"]] if data.get("channel") else [])
        return [str(channel) for channel in channels] if isinstance(channels, list) else []

    def _handle(self, request: Request, app_id: str, action: Callable[[], Response]) -> Response:
        """Authenticate as Pusher does, then run `action`; Pusher's errors are plain text."""
        try:
            self._authenticate(request, app_id)
            return action()
        except PusherError as error:
            return text_response(error.message + "\n", error.status)

    def _authenticate(self, request: Request, app_id: str) -> None:
        if app_id != self.credentials.app_id:
            raise PusherError(404, f"Unknown app_id: {app_id}")
        params = dict(request.args.items())
        if params.get("auth_key") != self.credentials.key:
            raise PusherError(401, "Unknown auth_key")
        timestamp = params.get("auth_timestamp", "")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise PusherError(401, "Missing or invalid auth_timestamp") from None
        if skew > TIMESTAMP_GRACE_SECONDS:
            raise PusherError(
                401,
                f"Timestamp expired: Given timestamp ({timestamp}) not within "
                f"{TIMESTAMP_GRACE_SECONDS}s of server time ({int(time.time())})",
            )
        if params.get("auth_version") != "1.0":
            raise PusherError(401, "Unsupported auth_version, expected 1.0")
        body = request.get_data(cache=True)
        if (body or "body_md5" in params) and params.get("body_md5") != hashlib.md5(body).hexdigest():
            raise PusherError(401, "The body_md5 you supplied did not match the body")
        signature = params.pop("auth_signature", "")
        query = "&".join(f"{key}={params[key]}" for key in sorted(params))
        string_to_sign = f"{request.method}\n{request.path}\n{query}"
        if not hmac.compare_digest(signature, sign(self.credentials.secret, string_to_sign)):
            raise PusherError(
                401,
                "Invalid signature: you should have sent HmacSHA256Hex("
                + json.dumps(string_to_sign)
                + ", your_secret_key), but you sent "
                + json.dumps(signature),
            )

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.get_data(cache=True))
        except ValueError:
            raise PusherError(400, "Request body must be valid JSON") from None
        if not isinstance(data, dict):
            raise PusherError(400, "Request body must be a JSON object")
        return data

    def _validate_event(self, name: Any, data: Any, channels: Any) -> list[str]:
        if not isinstance(name, str) or not name:
            raise PusherError(400, "Missing event name")
        if len(name) > MAX_EVENT_NAME:
            raise PusherError(400, f"Event name too long (maximum {MAX_EVENT_NAME} characters)")
        if not isinstance(data, str):
            raise PusherError(400, "Event data must be a string")
        if len(data.encode()) > MAX_DATA_BYTES:
            raise PusherError(413, f"Payload too large (maximum {MAX_DATA_BYTES} bytes)")
        if not isinstance(channels, list) or not channels:
            raise PusherError(400, "Missing channels")
        if len(channels) > MAX_CHANNELS:
            raise PusherError(400, f"Too many channels (maximum {MAX_CHANNELS})")
        for channel in channels:
            if not isinstance(channel, str) or not CHANNEL_NAME.match(channel):
                raise PusherError(400, f"Invalid channel name: {channel!r}")
        return channels

    def _deliver(self, name: str, data: str, channels: list[str], request: dict[str, Any]) -> None:
        event_id = secrets.token_hex(12)
        for channel in channels:
            sockets = self._sockets.publish(channel, name, data) if self._sockets is not None else 0
            self.outbox.record(
                provider="pusher",
                channel="realtime",
                recipient=channel,
                subject=name,
                body=data,
                provider_id=event_id,
                request=request,
                delivered_to_subscribers=self.is_occupied(channel),
                sockets=sockets,  # real clients (pusher_ws.py) the event was sent to
            )

    def _trigger(self, request: Request, args: dict[str, str]) -> Response:
        def action() -> Response:
            body = self._body(request)
            channels = body.get("channels") or ([body["channel"]] if body.get("channel") else None)
            valid = self._validate_event(body.get("name"), body.get("data"), channels)
            self._deliver(body["name"], body["data"], valid, body)
            return json_response({})

        return self._handle(request, args["app_id"], action)

    def _batch(self, request: Request, args: dict[str, str]) -> Response:
        def action() -> Response:
            batch = self._body(request).get("batch")
            if not isinstance(batch, list) or not batch:
                raise PusherError(400, "Missing batch")
            if len(batch) > MAX_BATCH:
                raise PusherError(400, f"Batch too large (maximum {MAX_BATCH} events)")
            events = []
            for item in batch:
                if not isinstance(item, dict):
                    raise PusherError(400, "Each batch item must be an object")
                channel = [item.get("channel")]
                events.append((item, self._validate_event(item.get("name"), item.get("data"), channel)))
            for item, channels in events:
                self._deliver(item["name"], item["data"], channels, item)
            return json_response({})

        return self._handle(request, args["app_id"], action)

    def _channel(self, request: Request, args: dict[str, str]) -> Response:
        def action() -> Response:
            channel = args["channel"]
            if not CHANNEL_NAME.match(channel):
                raise PusherError(400, f"Invalid channel name: {channel!r}")
            info = [item for item in request.args.get("info", "").split(",") if item]
            with self._lock:
                count = self._subscriptions.get(channel, 0)
            result: dict[str, Any] = {"occupied": count > 0}
            if "user_count" in info:
                if not channel.startswith("presence-"):
                    raise PusherError(
                        400, "Cannot retrieve the user count unless the channel is a presence channel"
                    )
                result["user_count"] = count
            if "subscription_count" in info:
                result["subscription_count"] = count
            return json_response(result)

        return self._handle(request, args["app_id"], action)

    def _channels(self, request: Request, args: dict[str, str]) -> Response:
        def action() -> Response:
            prefix = request.args.get("filter_by_prefix", "")
            info = [item for item in request.args.get("info", "").split(",") if item]
            if "user_count" in info and not prefix.startswith("presence-"):
                raise PusherError(
                    400, "Cannot retrieve the user count unless the channel is a presence channel"
                )
            channels: dict[str, dict[str, int]] = {}
            for name, count in sorted(self.occupied_channels().items()):
                if name.startswith(prefix):
                    channels[name] = {"user_count": count} if "user_count" in info else {}
            return json_response({"channels": channels})

        return self._handle(request, args["app_id"], action)
