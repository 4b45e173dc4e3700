"""/docs without a network: Swagger UI's script, stylesheet and icon come from the
fastapi-offline package and are served by the app itself, as is /openapi.json; `GET /` points
to the docs."""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = "/docs/assets"
# Swagger UI's assets (swagger-ui-bundle.js, swagger-ui.css, favicon.png) ship as package data.
ASSET_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_PARAMETERS = {
    # Swagger UI would otherwise load a validity badge from validator.swagger.io.
    "validatorUrl": None,
    # Credentials typed into "Authorize" survive a reload of the page (in the browser only).
    "persistAuthorization": True,
}


def install(app: FastAPI) -> None:
    """Serve /docs, its assets and `GET /`; the app must be built with docs_url=None."""
    app.mount(ASSETS, StaticFiles(directory=ASSET_DIRECTORY), name="docs-assets")

    @app.get(DOCS, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS)

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""))
        return HTMLResponse(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>omnirelay</title>"
            "</head><body><h1>omnirelay</h1>"
            f"<p>The API is documented at <a href=\"{root}{DOCS}\">{DOCS}</a> (try it out "
            f"there) and described by <a href=\"{root}{app.openapi_url}\">"
            f"{app.openapi_url}</a>.</p>"
            f"<p>Health: <a href=\"{root}/health\">/health</a>, "
            f"<a href=\"{root}/health/ready\">/health/ready</a>.</p></body></html>")
