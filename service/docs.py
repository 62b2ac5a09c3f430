"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served with their JS and CSS from the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (ReDoc also Google Fonts), so offline, or in a
container without internet, they are blank. The bundles here come from the ``fastapi-offline`` package,
whose releases refresh them from the upstream ``swagger-ui-dist`` and ``redoc`` builds; the HTML is still
FastAPI's (``get_swagger_ui_html``, ``get_redoc_html``), so titles, Swagger parameters and the OAuth2
redirect page are as before. ReDoc uses the system fonts instead of Google Fonts.

None of these routes sit behind the API key: like ``/openapi.json`` the docs stay open, and the key is
entered in Swagger UI's "Authorize" dialog for the calls it makes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs-assets"
# (package, folder inside it) that holds swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js.
ASSETS_PACKAGE = ("fastapi_offline", "static")
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
Page = Callable[[Request], Awaitable[HTMLResponse]]
# The pages may fetch from this origin only. The bundles need inline scripts and styles (FastAPI's page
# starts Swagger UI inline; ReDoc injects styles), data: images and a blob: worker (ReDoc's search). Any
# request to another host is refused by the browser before it leaves: ReDoc 2 renders its footer logo
# from cdn.redoc.ly unconditionally (it hides the image when loading fails).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
    )
)


def install_offline_docs(app: FastAPI) -> None:
    """Add ``/docs``, its OAuth2 redirect page, ``/redoc`` and the assets under ``ASSETS_URL``.

    The app must be built with ``docs_url=None, redoc_url=None``: FastAPI's CDN pages would otherwise
    answer first. A missing asset folder fails here, at startup, not as a blank page later."""
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    app.add_api_route(DOCS_URL, _swagger_page(app), include_in_schema=False)
    redirect_url = app.swagger_ui_oauth2_redirect_url
    if redirect_url:
        app.add_api_route(redirect_url, _oauth2_redirect_page, include_in_schema=False)
    app.add_api_route(REDOC_URL, _redoc_page(app), include_in_schema=False)


def _prefix(request: Request) -> str:
    """The ASGI ``root_path`` (behind a proxy that mounts the app under a prefix), without its last slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _swagger_page(app: FastAPI) -> Page:
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = _prefix(request)
        redirect_url = app.swagger_ui_oauth2_redirect_url
        return _locked_down(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    return swagger_ui_html


def _redoc_page(app: FastAPI) -> Page:
    async def redoc_html(request: Request) -> HTMLResponse:
        root = _prefix(request)
        return _locked_down(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )

    return redoc_html


async def _oauth2_redirect_page() -> HTMLResponse:
    return _locked_down(get_swagger_ui_oauth2_redirect_html())


def _locked_down(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
