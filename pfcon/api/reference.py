"""``/api/v1/openapi.json`` and ``/api/v1/docs/``: the API description and a page that shows it.

No credentials needed (like health): the description holds no secret. The page is Swagger UI,
whose files come from the swagger-ui-py package installed with pfcon, so it works offline
(no CDN); this module serves only the three files the page loads, and the page's own start-up
script, so the page runs under a Content-Security-Policy without inline scripts.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, send_from_directory
from flask.typing import ResponseReturnValue

from pfcon.api.openapi import PREFIX, document

# found, not imported: swagger-ui-py loads PyYAML, about 1 MiB in each worker for a page few
# open (the idle footprint, docs/performance.md)
ASSETS = Path(find_spec("swagger_ui").origin).parent / "static"
SERVED_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>pfcon API</title>
  <link rel="icon" href="assets/favicon-32x32.png">
  <link rel="stylesheet" href="assets/swagger-ui.css">
</head>
<body>
  <div id="reference"></div>
  <script src="assets/swagger-ui-bundle.js"></script>
  <script src="start.js"></script>
</body>
</html>
"""
START = """window.ui = SwaggerUIBundle({
  url: "../openapi.json",
  dom_id: "#reference",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  validatorUrl: null,
});
"""


def reference_blueprint() -> Blueprint:
    routes = Blueprint("reference", __name__, url_prefix=PREFIX)

    @routes.after_request
    def headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    @routes.get("/openapi.json")
    def openapi_json() -> ResponseReturnValue:
        return jsonify(document())

    @routes.get("/docs/", strict_slashes=True)  # /docs redirects here, so relative links resolve
    def page() -> ResponseReturnValue:
        return Response(PAGE, mimetype="text/html")

    @routes.get("/docs/start.js")
    def start() -> ResponseReturnValue:
        return Response(START, mimetype="text/javascript")

    @routes.get("/docs/assets/<name>")
    def asset(name: str) -> ResponseReturnValue:
        if name not in SERVED_ASSETS:
            abort(404)
        return send_from_directory(str(ASSETS), name, max_age=24 * 3600)

    return routes
