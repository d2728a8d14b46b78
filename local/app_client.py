"""An app's view of the local stack's HTTP API: bearer tokens from the local issuer, JSON in and out.

    app = AppClient(stack.api.url, stack.sandbox.url)
    app.put("/v1/me/devices/tok-1", user="ana", json={"platform": "ios"})   # -> AppAnswer(200, {...})
    app.get("/v1/me/notifications", user="ana", query={"unread": "true"})

Tokens are fetched from the sandbox issuer (`GET /_token?sub=`) and cached per person until shortly
before they expire. Loopback only, like the rest of the local stack.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from local.http_api import is_loopback_url


@dataclass(frozen=True)
class AppAnswer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class AppClient:
    def __init__(self, api_url: str, issuer_url: str, timeout: float = 10.0) -> None:
        for url in (api_url, issuer_url):
            if not is_loopback_url(url):
                raise ValueError(f"{url}: the local app client talks to loopback only")
        self.api_url = api_url.rstrip("/")
        self.issuer_url = issuer_url.rstrip("/")
        self.timeout = timeout
        self._tokens: dict[str, tuple[str, float]] = {}

    def token(self, user: str) -> str:
        cached = self._tokens.get(user)
        if cached and cached[1] > time.monotonic() + 60:
            return cached[0]
        query = urllib.parse.urlencode({"sub": user})
        with urllib.request.urlopen(f"{self.issuer_url}/_token?{query}", timeout=self.timeout) as response:
            issued = json.loads(response.read())
        self._tokens[user] = (issued["token"], time.monotonic() + float(issued["expires_in"]))
        return issued["token"]

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None,
        json_body: Any = None,
        query: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> AppAnswer:
        """`user=None` sends no token (or `token` as given)."""
        url = self.api_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        bearer = token if token is not None else (self.token(user) if user is not None else None)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # loopback (checked)
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        return AppAnswer(status, json.loads(text) if text else None)

    def get(self, path: str, *, user: str | None, **kwargs: Any) -> AppAnswer:
        return self.request("GET", path, user=user, **kwargs)

    def post(self, path: str, *, user: str | None, **kwargs: Any) -> AppAnswer:
        return self.request("POST", path, user=user, **kwargs)

    def put(self, path: str, *, user: str | None, **kwargs: Any) -> AppAnswer:
        return self.request("PUT", path, user=user, **kwargs)

    def delete(self, path: str, *, user: str | None, **kwargs: Any) -> AppAnswer:
        return self.request("DELETE", path, user=user, **kwargs)
