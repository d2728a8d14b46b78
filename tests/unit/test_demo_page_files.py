"""What the demo app page's host serves from `web/` (local/sandboxes/demo_page.py): the components,
and of `node_modules` only the packages the browser loads, never a file outside them."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.routing import Map, Rule
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from local.sandboxes.demo_page import DemoPage

pytestmark = pytest.mark.unit


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    files = {
        "components/herald-inbox.js": "export class HeraldInbox {}",
        "components/notes.txt": "not a module",
        "node_modules/lit/index.js": "export * from 'lit-element/lit-element.js';",
        "node_modules/@lit/reactive-element/reactive-element.js": "export class ReactiveElement {}",
        "node_modules/axe-core/axe.min.js": "window.axe = {};",  # the tests' tool, not the page's
        "node_modules/lit/package.json": "{}",
        "secret.js": "nothing to serve",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def client(web_root: Path) -> Client:
    page = DemoPage(pusher_key="key", ws_host="127.0.0.1", ws_port=1, web_root=web_root)
    rules = Map([Rule(route.path, methods=list(route.methods), endpoint=route) for route in page.routes()])

    def app(environ: dict, start_response: object) -> object:
        request = Request(environ)
        route, args = rules.bind_to_environ(environ).match()
        return route.handler(request, args)(environ, start_response)

    return Client(app, Response)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/web/components/herald-inbox.js", "export class HeraldInbox {}"),
        ("/web/node_modules/lit/index.js", "export * from 'lit-element/lit-element.js';"),
        ("/web/node_modules/@lit/reactive-element/reactive-element.js", "export class ReactiveElement {}"),
    ],
)
def test_the_components_and_the_browser_packages_are_served_as_javascript(
    web_root: Path, path: str, body: str
) -> None:
    # WHEN the page asks for a component or a module of a package it loads
    response = client(web_root).get(path)
    # THEN it gets the file, as JavaScript
    assert response.status_code == 200
    assert response.get_data(as_text=True) == body
    assert response.mimetype == "text/javascript"


@pytest.mark.parametrize(
    "path",
    [
        "/web/components/notes.txt",  # not a module
        "/web/node_modules/axe-core/axe.min.js",  # a package the page does not load
        "/web/node_modules/lit/package.json",  # not a module
        "/web/node_modules/lit/../../secret.js",  # outside node_modules
        "/web/node_modules/lit/%2e%2e/%2e%2e/secret.js",
        "/web/node_modules/lit/missing.js",
    ],
)
def test_nothing_else_of_web_is_served(web_root: Path, path: str) -> None:
    assert client(web_root).get(path).status_code == 404


def test_a_package_not_installed_says_how_to_install_it(web_root: Path) -> None:
    response = client(web_root).get("/web/node_modules/pusher-js/dist/web/pusher.min.js")
    assert response.status_code == 503
    assert "npm ci" in response.get_data(as_text=True)


def test_the_operator_console_is_served_with_its_configuration(web_root: Path) -> None:
    # GIVEN the console's files, and a stack that set Herald's API and its admin scope
    for name in ("index.html", "console.js", "console.css", "notes.md"):
        (web_root / "console" / name).parent.mkdir(parents=True, exist_ok=True)
        (web_root / "console" / name).write_text(f"<{name}>", encoding="utf-8")
    page = DemoPage(pusher_key="key", ws_host="127.0.0.1", ws_port=1, web_root=web_root)
    page.api_url, page.admin_scope = "http://127.0.0.1:3000", "ops/admin"
    # strict_slashes=False as the sandbox host maps its routes: /console matches /console/
    rules = Map(
        [Rule(r.path, methods=list(r.methods), endpoint=r) for r in page.routes()], strict_slashes=False
    )

    def app(environ: dict, start_response: object) -> object:
        route, args = rules.bind_to_environ(environ).match()
        return route.handler(Request(environ), args)(environ, start_response)

    browser = Client(app, Response)
    # WHEN a browser asks for the page, its files and its configuration
    # THEN it gets them (the page's address with its trailing slash, for its relative URLs) ...
    assert browser.get("/console/").get_data(as_text=True) == "<index.html>"
    moved = browser.get("/console")
    assert (moved.status_code, moved.headers["Location"]) == (308, "/console/")
    assert browser.get("/console/console.js").mimetype == "text/javascript"
    assert browser.get("/console/console.css").get_data(as_text=True) == "<console.css>"
    assert browser.get("/console/config.json").get_json() == {
        "api_url": "http://127.0.0.1:3000",
        "token_url": "/_token",
        "operator": "ops-demo",
        "scope": "ops/admin",
    }
    # ... and nothing else of the folder
    assert browser.get("/console/notes.md").status_code == 404
