"""rq-dashboard 0.9.0 mounted at ``/admin/rq`` on the app's Redis, for admins only.

rq-dashboard has no authentication, changes state with plain POSTs (and one GET: ``/requeue/<q>``),
and its underscore templates print job fields with ``<%= %>``, which does not escape. So, for every
request to its blueprint (pages, JSON, static files):
- the caller must be an admin (Bearer token or session); others get 401/403, or a redirect to
  ``/login`` when a browser without a session asks for a page;
- the state-changing GET is refused (405), and POSTs from a cookie session need the CSRF token
  (the app-wide CSRFProtect checks it; we inject it into its pages for jQuery's requests);
- its pages get a script that makes every ``<%= %>`` escape, so nothing a client wrote (a file
  name in job arguments, an exception message) is shown as HTML. The two fields its jobs list
  already escapes itself (``$('<div/>').text(…).html()``: description, exc_info) lose that wrapper
  on those pages, or they would be escaped twice and show ``&amp;`` for ``&``.

Job descriptions are stored as plain text (jobs/queues.py): escaping is the display's job, once.
"""

from __future__ import annotations

import html
import re

from flask import Flask, Response, request
from flask_wtf.csrf import generate_csrf

from webapp.auth import current_user, login_redirect
from webapp.errors import api_error

URL_PREFIX = "/admin/rq"
BLUEPRINT = "rq_dashboard"
# Refused outright: a GET that changes state can be triggered by any cross-site <img>.
UNSAFE_GET_ENDPOINTS = {"rq_dashboard.requeue_all"}
_UNDERSCORE_TAG = 'js/underscore-umd-min.js" type="text/javascript"></script>'
# rq-dashboard's own escaping inside a template tag, e.g. <%= $('<div/>').text(d.description).html() %>.
_SELF_ESCAPED = re.compile(r"<%=\s*\$\('<div/>'\)\.text\(([\w.]+)\)\.html\(\)\s*%>")
_HARDENING = """
<meta name="csrf-token" content="{token}">
<script type="text/javascript">
  // Escape everything the templates print: <%= %> and <%- %> both escape, nothing interpolates raw.
  _.templateSettings.escape = /<%[=-]([\\s\\S]+?)%>/g;
  _.templateSettings.interpolate = /(.)^/g;
  // rq-dashboard's buttons POST through jQuery: send the CSRF token the app expects.
  $.ajaxSetup({{headers: {{"X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content}}}});
</script>"""


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html" and request.method == "GET"


def _guard():  # type: ignore[no-untyped-def]
    if request.blueprint != BLUEPRINT:
        return None
    user = current_user()
    if user is None:
        if _wants_html():
            return login_redirect()
        return api_error(401, "unauthorized", "Sign in as an admin, or send `Authorization: Bearer <token>`.")
    if not user.is_admin:
        return api_error(403, "role_required", "rq-dashboard is for admins.")
    if request.method == "GET" and request.endpoint in UNSAFE_GET_ENDPOINTS:
        return api_error(405, "method_not_allowed", "Use POST to requeue.")
    return None


def _harden_page(response: Response) -> Response:
    if request.blueprint != BLUEPRINT or response.mimetype != "text/html" or response.direct_passthrough:
        return response
    page = response.get_data(as_text=True)
    if _UNDERSCORE_TAG in page:
        extra = _HARDENING.format(token=html.escape(generate_csrf(), quote=True))
        page = _SELF_ESCAPED.sub(r"<%= \1 %>", page)  # our <%= %> escapes it, once
        response.set_data(page.replace(_UNDERSCORE_TAG, _UNDERSCORE_TAG + extra, 1))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def init_app(app: Flask, redis_url: str) -> None:
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", redis_url)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 5000)
    setup_rq_connection(app)
    # App-level hooks filtered by blueprint name: the rq_dashboard blueprint is a module-level
    # object shared by every app made in this process, so hooks on it would pile up.
    app.before_request(_guard)
    app.after_request(_harden_page)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
