"""Swagger UI (``/docs``) and ReDoc (``/redoc``) render in a real headless Chromium with no network.

The real server (``smartcash serve``, uvicorn on loopback, API key set) serves the pages. Chromium resolves
no host name but 127.0.0.1, so nothing can leave loopback, and its net log tells which requests the page
made (it would show an attempt to reach a CDN even though the attempt fails). Each page must
(1) list every operation of ``/openapi.json`` in the DOM after its scripts ran (``--dump-dom``),
(2) give a screenshot that is not blank and shows colours of the bundled CSS,
(3) make requests to loopback only, and have none of its own requests blocked by its Content-Security-Policy.
A control renders FastAPI's stock CDN page the same way: the checks must see its CDN and Google Fonts
requests and call its screenshot blank, or they prove nothing.
Skipped, with the reason, only where no Chromium binary exists (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from fastapi.openapi.docs import get_redoc_html
from PIL import Image

from service.docs import ASSETS_URL
from tests.service.test_e2e import ServerProcess

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 1600)
# Swagger UI's GET/POST button colours and ReDoc's dark right panel: there only when the CSS applied.
SWAGGER_COLOURS = {"GET button": (97, 175, 254), "POST button": (73, 204, 144)}
REDOC_COLOURS = {"right panel": (38, 50, 56)}
CSP_VIOLATION = "violates the following Content Security Policy"


@dataclass(frozen=True)
class Rendered:
    dom: str
    screenshot: Path
    page_requests: list[str]  # URLs the page asked for (its navigation excluded)
    csp_violations: list[str]  # console messages of loads the page's CSP blocked


def _chromium_binary() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _chromium_binary()
    if binary is None:
        reason = f"no Chromium binary on PATH (tried {', '.join(CHROMIUM_NAMES)}); .ci/run installs chromium"
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def docs_server(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
) -> Iterator[ServerProcess]:
    """The real server, with an API key set: the docs and their assets must not need it."""
    process = ServerProcess(tmp_path_factory.mktemp("docs_state"), checkpoint_root, data_root)
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def schema(docs_server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{docs_server.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def render(chromium: str, url: str, workdir: Path, budget_ms: int = 15_000) -> Rendered:
    """Load ``url`` in headless Chromium, let its scripts run, and return what it showed and requested."""
    workdir.mkdir(parents=True, exist_ok=True)
    screenshot, net_log = workdir / "page.png", workdir / "net-log.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in CI and in containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the network is loopback only
        f"--log-net-log={net_log}",
        "--enable-logging=stderr",  # console messages (CSP violations) go to stderr
        "--v=0",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={budget_ms}",  # scripts run (and fetch the schema) before the dump
        "--dump-dom",
        f"--screenshot={screenshot}",
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"chromium exit {done.returncode}: {stderr[-3000:]}"
    assert screenshot.is_file(), f"no screenshot written: {stderr[-3000:]}"
    violations = [line for line in stderr.splitlines() if CSP_VIOLATION in line]
    return Rendered(done.stdout.decode(errors="replace"), screenshot, _page_requests(net_log), violations)


def _page_requests(net_log: Path) -> list[str]:
    """URLs of the net log's requests that a page initiated (initiator is an origin, "null" for file://).

    The navigation itself and Chromium's own traffic (update checks, sign-in, network time, autofill)
    carry no initiator origin: they are not the page's doing and are left out."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "url" in event.get("params", {})
        and event["params"].get("initiator", "not an origin") != "not an origin"
    ]


def _operations(schema: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(method, first tag, operationId) of every operation in the schema."""
    return {
        (method, operation["tags"][0], operation["operationId"])
        for path_item in schema["paths"].values()
        for method, operation in path_item.items()
    }


def screenshot_stats(path: Path) -> tuple[int, float]:
    """(distinct colours, share of non-white pixels) of a PNG."""
    image = Image.open(path).convert("RGB")
    assert image.size == WINDOW
    colours = image.getcolors(maxcolors=image.width * image.height)
    assert colours is not None
    white = sum(count for count, rgb in colours if rgb == (255, 255, 255))
    return len(colours), 1 - white / (image.width * image.height)


def looks_rendered(path: Path) -> bool:
    """A blank page is one colour; a page of black text on white has a few hundred antialiasing greys and
    stays mostly white. A rendered docs page has thousands of colours and large coloured areas."""
    distinct, non_white = screenshot_stats(path)
    return distinct > 500 and non_white > 0.2


def colour_share(path: Path, rgb: tuple[int, int, int], tolerance: int = 6) -> float:
    """Fraction of pixels within ``tolerance`` of ``rgb`` on every channel."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    close = np.abs(pixels - np.array(rgb, dtype=np.int16)).max(axis=2) <= tolerance
    return float(close.mean())


def assert_offline_and_styled(page: Rendered, colours: dict[str, tuple[int, int, int]]) -> None:
    foreign = [url for url in page.page_requests if urlsplit(url).hostname != "127.0.0.1"]
    assert foreign == [], f"the page asked for other hosts: {foreign}"
    for violation in page.csp_violations:  # the CSP may only have stopped loads from other hosts
        quoted = re.search(r"'(https?://[^']+)'", violation)
        assert quoted and urlsplit(quoted.group(1)).hostname != "127.0.0.1", violation
    distinct, non_white = screenshot_stats(page.screenshot)
    assert looks_rendered(page.screenshot), f"blank: {distinct} colours, {non_white:.1%} non-white"
    for name, rgb in colours.items():
        share = colour_share(page.screenshot, rgb)
        assert share > 0.005, f"{name} colour {rgb} covers {share:.2%} of the page: the CSS did not apply"


def test_swagger_ui_renders_offline(
    chromium: str, docs_server: ServerProcess, schema: dict[str, Any], tmp_path: Path
) -> None:
    page = render(chromium, f"{docs_server.url}/docs", tmp_path)
    assert "<title>SmartCash Validation Service - Swagger UI</title>" in page.dom
    # Swagger UI gives each operation block the id operations-<tag>-<operationId> and its method's class.
    rendered = set(re.findall(r'class="opblock opblock-(\w+)[^"]*" id="operations-([^"]+)"', page.dom))
    assert rendered == {(method, f"{tag}-{op_id}") for method, tag, op_id in _operations(schema)}
    assert 'data-path="/v1/validations"' in page.dom
    requested = {urlsplit(url).path for url in page.page_requests}
    assets = {f"{ASSETS_URL}/swagger-ui-bundle.js", f"{ASSETS_URL}/swagger-ui.css", "/openapi.json"}
    assert assets <= requested
    assert_offline_and_styled(page, SWAGGER_COLOURS)


def test_redoc_renders_offline(
    chromium: str, docs_server: ServerProcess, schema: dict[str, Any], tmp_path: Path
) -> None:
    page = render(chromium, f"{docs_server.url}/redoc", tmp_path)
    assert "<title>SmartCash Validation Service - ReDoc</title>" in page.dom
    rendered = set(re.findall(r'data-section-id="tag/([^"/]+)/operation/([^"]+)"', page.dom))
    assert rendered == {(tag, operation_id) for _, tag, operation_id in _operations(schema)}
    assert ">/v1/validations</span>" in page.dom  # the endpoint path shown beside an operation
    requested = {urlsplit(url).path for url in page.page_requests}
    assert {f"{ASSETS_URL}/redoc.standalone.js", "/openapi.json"} <= requested
    assert_offline_and_styled(page, REDOC_COLOURS)


def test_the_checks_catch_fastapis_stock_cdn_page(chromium: str, tmp_path: Path) -> None:
    """Control: FastAPI's stock ReDoc page (CDN script, Google Fonts) is seen reaching out, and is blank."""
    stock = get_redoc_html(openapi_url="http://127.0.0.1:9/openapi.json", title="stock")
    page_file = tmp_path / "stock-redoc.html"
    page_file.write_bytes(bytes(stock.body))
    page = render(chromium, page_file.as_uri(), tmp_path / "control", budget_ms=5_000)
    hosts = {urlsplit(url).hostname for url in page.page_requests}
    assert {"cdn.jsdelivr.net", "fonts.googleapis.com"} <= hosts, page.page_requests
    assert "data-section-id" not in page.dom
    assert not looks_rendered(page.screenshot), screenshot_stats(page.screenshot)
