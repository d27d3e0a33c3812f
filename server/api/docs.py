"""Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from assets shipped in a Python package
(``fastapi-offline``), not a CDN: the server often runs where the internet is not, and a CDN
script on a page that holds an admin session would be a script the site does not control.

FastAPI's pages start the UI with one inline script, which the console's policy refuses; these
pages carry their own policy allowing exactly that script by its hash, and inline styles (both
UIs inject ``<style>`` at run time), nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gridwatch.server.api import security

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _with_own_policy(page: HTMLResponse, *, blob_workers: bool = False) -> HTMLResponse:
    body = bytes(page.body).decode()
    hashes = ["sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()
              for s in _INLINE_SCRIPT.findall(body)]
    return HTMLResponse(body, headers={"Content-Security-Policy": security.policy(
        hashes, inline_styles=True, blob_workers=blob_workers)})


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (create the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _with_own_policy(get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API", oauth2_redirect_url=None,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None}))  # the default validator is a public web service

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _with_own_policy(get_redoc_html(
            openapi_url=openapi_url, title=f"{app.title} - API", redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False), blob_workers=True)
