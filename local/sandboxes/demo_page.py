"""`/demo/`: the local stack's demo app page, served by the sandbox host.

A stand-in for a product's web app: sign in as a demo user (the token comes from the local issuer,
`/_token`, on the same origin), connect the real pusher-js (npm, `web/node_modules`, installed by
`make local` / `make test`) to the Pusher sandbox's WebSocket side, authorize `private-user-<id>`
through Herald's `POST /v1/pusher/auth` with the bearer token, and show the notifications that
arrive in Herald's `<herald-inbox>`; `<herald-preferences>` edits the person's settings. The
page's files are `web/demo/`; `GET /demo/config.json` tells it where everything is. The
components (`web/components/`) and the npm packages they load without a build step (Lit through
an import map, pusher-js as a plain script) are served under `/web/`, as a product would serve
them as static assets.

`/console/`: the operator console (`web/console/`, `<herald-console>`) on the same host. The
operator signs in with a token the local issuer mints with the admin scope (`/_token?sub=&scope=`);
`GET /console/config.json` names Herald's API, the issuer, a demo operator and the scope (the
stack's `AdminScope`). The issuer mints a token for any `sub`: it exists on the local stack only. A
deployment serves `web/console/` as static assets with its identity provider's sign-in in place of
the page's token provider (README, "Operator console").
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from local.sandboxes.web import Route, json_response, text_response

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
PUSHER_JS = Path("node_modules/pusher-js/dist/web/pusher.min.js")
PAGE_FILES = ("index.html", "demo.js", "demo.css")
CONSOLE_FILES = ("index.html", "console.js", "console.css")
DEMO_OPERATOR = "ops-demo"  # the operator id the console's sign-in offers
# The npm packages the components load in the browser (web/package.json), and nothing else of
# node_modules: Lit and its parts (through the page's import map) and pusher-js.
BROWSER_PACKAGES = ("lit", "lit-html", "lit-element", "@lit/reactive-element", "pusher-js")


class DemoPage:
    """Serves `web/demo/`, `web/console/` and pusher-js. `api_url` (Herald's HTTP API), `users` (the
    demo users the sign-in offers) and `admin_scope` (the template's AdminScope, which the
    console's token must carry) are set by whoever runs the stack (local/stack.py)."""

    def __init__(
        self,
        *,
        pusher_key: str,
        ws_host: str,
        ws_port: int,
        web_root: Path = WEB_ROOT,
    ) -> None:
        self.pusher_key = pusher_key
        self.ws_host = ws_host
        self.ws_port = ws_port
        self.web_root = web_root
        self.api_url: str | None = None
        self.users: list[str] = []
        self.admin_scope: str | None = None
        self.operator = DEMO_OPERATOR

    def config(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "token_url": "/_token",
            "users": list(self.users),
            "pusher": {
                "key": self.pusher_key,
                "ws_host": self.ws_host,
                "ws_port": self.ws_port,
                "cluster": "mt1",  # required by pusher-js, unused with wsHost
                "auth_endpoint": f"{self.api_url}/v1/pusher/auth" if self.api_url else None,
            },
        }

    def console_config(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "token_url": "/_token",
            "operator": self.operator,
            "scope": self.admin_scope,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/console/", ("GET",), self._console_page),
            Route("/console/config.json", ("GET",), lambda req, args: json_response(self.console_config())),
            Route("/console/<name>", ("GET",), lambda request, args: self._console_file(args["name"])),
            Route("/demo/", ("GET",), lambda request, args: self._file("index.html")),
            Route("/demo/config.json", ("GET",), lambda request, args: json_response(self.config())),
            Route("/demo/vendor/pusher.min.js", ("GET",), self._pusher_js),
            Route("/demo/<name>", ("GET",), lambda request, args: self._file(args["name"])),
            Route("/web/components/<name>", ("GET",), self._component),
            Route("/web/node_modules/<path:rest>", ("GET",), self._package_file),
        ]

    def _component(self, request: Request, args: dict[str, str]) -> Response:
        folder = self.web_root / "components"
        path = folder / args["name"]
        if path.suffix != ".js" or path.parent != folder or not path.is_file():
            return text_response("Not Found\n", 404)
        return self._send(path)

    def _package_file(self, request: Request, args: dict[str, str]) -> Response:
        modules = (self.web_root / "node_modules").resolve()
        path = (modules / args["rest"]).resolve()
        package = next((name for name in BROWSER_PACKAGES if path.is_relative_to(modules / name)), None)
        if package is None or path.suffix not in (".js", ".map") or not path.is_file():
            if package is not None and not (modules / package).is_dir():
                return text_response(
                    f"{package} is not installed: run `make local` (it runs `npm ci` in web/)\n", 503
                )
            return text_response("Not Found\n", 404)
        return self._send(path)

    def _file(self, name: str) -> Response:
        if name not in PAGE_FILES:
            return text_response("Not Found\n", 404)
        return self._send(self.web_root / "demo" / name)

    def _console_page(self, request: Request, args: dict[str, str]) -> Response:
        if not request.path.endswith("/"):  # the page names its files relative to /console/
            return redirect(f"{request.path}/", code=308)
        return self._console_file("index.html")

    def _console_file(self, name: str) -> Response:
        if name not in CONSOLE_FILES:
            return text_response("Not Found\n", 404)
        return self._send(self.web_root / "console" / name)

    def _pusher_js(self, request: Request, args: dict[str, str]) -> Response:
        path = self.web_root / PUSHER_JS
        if not path.is_file():
            return text_response(
                "pusher-js is not installed: run `make local` (it runs `npm ci` in web/)\n", 503
            )
        return self._send(path)

    @staticmethod
    def _send(path: Path) -> Response:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        return Response(path.read_bytes(), content_type=content_type, headers={"Cache-Control": "no-store"})
