"""A real browser on the local stack: Debian's chromium driven by Playwright (pytest-playwright).

`make test` installs chromium (apt) and pusher-js (`npm ci` in web/) before the suite runs; the
browser is launched from `/usr/bin/chromium` (Playwright's own browser downloads are not used).
Screenshots of each step are kept under `.local/browser-artifacts/<test>/`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.sandboxes.web import is_loopback_url
from local.stack import LocalStack, seed_demo_users

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PUSHER_JS = REPO / "web/node_modules/pusher-js/dist/web/pusher.min.js"
AXE_JS = REPO / "web/node_modules/axe-core/axe.min.js"
# The template's minimum: a high-urgency push not acknowledged within it is followed by email.
FALLBACK_DELAY_SECONDS = 30
ARTIFACTS = REPO / ".local" / "browser-artifacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": ["--no-sandbox"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local stack on free ports, its demo users seeded as `make local` seeds them."""
    if not PUSHER_JS.exists():
        pytest.fail(f"{PUSHER_JS.relative_to(REPO)} is missing: `make test` runs `npm ci` in web/")
    state = tmp_path_factory.mktemp("local") / "stack.json"
    with LocalStack(
        aws_port=0,
        sandbox_port=0,
        api_port=0,
        parameters={"FallbackDelaySeconds": FALLBACK_DELAY_SECONDS},
        state_file=state,
    ) as running:
        seed_demo_users(running)
        yield running
        assert running.moto
        running.moto.reset()


class Artefacts:
    """Numbered screenshots (and notes) of one test's steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()

    def path(self, step: str, suffix: str) -> Path:
        self.count += 1
        return self.folder / f"{self.count:02d}-{step}{suffix}"

    def note(self, step: str, data: Any) -> Path:
        path = self.path(step, ".json")
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    def screenshot(self, page: Any, step: str) -> Path:
        path = self.path(step, ".png")
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(autouse=True)
def loopback_only(page: Any) -> Iterator[None]:
    """Every request the page makes must stay on loopback: others are aborted, and fail the test."""
    off_machine: list[str] = []

    def route(route: Any) -> None:
        if is_loopback_url(route.request.url):
            route.continue_()
        else:
            off_machine.append(route.request.url)
            route.abort()

    page.context.route("**/*", route)
    yield
    assert off_machine == [], f"the page tried to leave the machine: {off_machine}"


@pytest.fixture
def artefacts(request: pytest.FixtureRequest) -> Artefacts:
    return Artefacts(ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.originalname))


def axe_violations(page: Any, selector: str) -> list[dict[str, Any]]:
    """axe-core (npm, web/node_modules) injected into the page, run on `selector` (open shadow
    roots included): its violations of impact serious or critical, each with the nodes it names."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS.relative_to(REPO)} is missing: `make test` runs `npm ci` in web/")
    page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate(
        """async (selector) => {
            const root = document.querySelector(selector);
            const found = await window.axe.run(root, {resultTypes: ["violations"]});
            return found.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target),
            }));
        }""",
        selector,
    )
    return [v for v in results if v["impact"] in ("serious", "critical")]


def demo_status(page: Any) -> Any:
    """The demo app page's own status line (the components have status regions of their own)."""
    return page.get_by_role("status").and_(page.locator("#status"))
