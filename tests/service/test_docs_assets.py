"""``/docs`` and ``/redoc`` reference only assets the app serves itself, open with or without an API key."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.docs import ASSET_FILES, ASSETS_URL, CONTENT_SECURITY_POLICY
from service.main import create_app
from service.settings import Settings

Client = Callable[..., TestClient]
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
# Every URL a page loads: link href, script src, ReDoc's spec-url, Swagger UI's url: '...'.
URL_IN_PAGE = re.compile(r"""(?:href|src|spec-url)="([^"]*)"|\burl: '([^']*)'""")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


def page_urls(html: str) -> list[str]:
    return [href or url for href, url in URL_IN_PAGE.findall(html)]


@pytest.mark.parametrize("api_key", [None, "s3cret"], ids=["open", "with-api-key"])
def test_docs_pages_load_only_local_assets_without_a_key(client_for: Client, api_key: str | None) -> None:
    client = client_for(api_key=api_key)
    loaded: set[str] = set()
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        # No absolute URL at all: not to a CDN, not to fonts, not even to ourselves.
        assert "http://" not in response.text and "https://" not in response.text, page
        loaded.update(page_urls(response.text))
    expected = {f"{ASSETS_URL}/{name}" for name in ASSET_FILES} | {"/openapi.json"}
    assert loaded == expected
    for url in sorted(loaded):
        response = client.get(url)  # never with the key: the docs must work for whoever opens them
        assert response.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert response.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], url
        assert len(response.content) > 1000, url
    if api_key is not None:  # the docs being open does not open the API
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"X-API-Key": api_key}).status_code == 200


def test_swagger_page_keeps_fastapis_title_schema_url_and_parameters(client_for: Client) -> None:
    html = client_for().get("/docs").text
    assert "<title>SmartCash Validation Service - Swagger UI</title>" in html
    assert "url: '/openapi.json'" in html
    assert '"deepLinking": true' in html  # FastAPI's default Swagger UI parameters still apply
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in html
    assert "<title>SmartCash Validation Service - ReDoc</title>" in client_for().get("/redoc").text


def test_docs_follow_the_root_path_of_a_reverse_proxy(settings_for: Callable[..., Settings]) -> None:
    client = TestClient(create_app(settings_for()), root_path="/smartcash")
    urls = page_urls(client.get("/docs").text) + page_urls(client.get("/redoc").text)
    assert urls and all(url.startswith("/smartcash/") for url in urls), urls


@pytest.mark.parametrize(
    "path",
    [
        f"{ASSETS_URL}/nope.js",
        f"{ASSETS_URL}/../service/main.py",
        f"{ASSETS_URL}/..%2f..%2fcore.py",
        f"{ASSETS_URL}/%2e%2e/%2e%2e/__init__.py",
        f"{ASSETS_URL}/",
    ],
)
def test_asset_mount_serves_nothing_but_its_files(client_for: Client, path: str) -> None:
    response = client_for().get(path)
    assert response.status_code == 404, (path, response.text[:200])


def test_asset_requests_are_labelled_by_the_mount_not_unmatched(client_for: Client) -> None:
    client = client_for()
    for name in ASSET_FILES:
        assert client.get(f"{ASSETS_URL}/{name}").status_code == 200
    assert client.get(f"{ASSETS_URL}/no-such-file.js").status_code == 404
    text = client.get("/metrics").text
    served = [line for line in text.splitlines() if f'route="{ASSETS_URL}/{{path}}"' in line]
    assert any('status="200"' in line for line in served) and any('status="404"' in line for line in served)
    assert 'route="unmatched"' not in text
