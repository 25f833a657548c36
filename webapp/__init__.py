"""Snapmatch web app: HTTP only. ``create_app`` wires settings, errors, auth, blueprints and CLI.

Views parse and authorise, call one domain function, and shape the answer.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from snapmatch import settings as settings_module
from snapmatch.settings import Settings, get_settings


def create_app(test_config: dict | None = None) -> Flask:
    # Read at call time, not import time: a test (or a CLI) that points SNAPMATCH_VAR_DIR elsewhere
    # must not share another app's scratch directory.
    var_dir = os.path.abspath(str(settings_module.VAR_DIR))
    app = Flask(__name__, instance_path=var_dir)
    settings: Settings = (test_config or {}).get("SNAPMATCH") or get_settings()
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        SESSION_COOKIE_NAME="snapmatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.SESSION_COOKIE_SECURE,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.SESSION_LIFETIME_HOURS),
        SNAPMATCH=settings,
        # Per-file limits are checked while streaming; this only bounds one request's body.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes * 20,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        MAX_FORM_PARTS=2000,
        UPLOAD_TMP_DIR=os.path.join(var_dir, "tmp"),
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k != "SNAPMATCH"})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from webapp import admin, attendee, cli, errors, health, photographer, progress
    from webapp.uploads import LargeBodyReads, UploadRequest, remove_stale_spools

    app.request_class = UploadRequest
    app.wsgi_app = LargeBodyReads(app.wsgi_app)  # type: ignore[method-assign]
    remove_stale_spools(app.config["UPLOAD_TMP_DIR"])

    app.url_map.converters["id"] = errors.IdConverter
    errors.init_app(app)
    cli.init_app(app)
    for module in (health, photographer, attendee, progress, admin):
        app.register_blueprint(module.bp)

    # [area: security, issue 13] extensions and blueprints below this line
    from webapp import auth, bodylimits, csrf, identity, ratelimits, security_headers, signin
    from webapp.secret_key import check_secret_key

    app.config["SECRET_KEY"] = check_secret_key(app.config.get("SECRET_KEY"))
    if settings.TRUSTED_PROXIES:
        n = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    # Order matters: the body limits run before anything may read the body (CSRF reads forms).
    bodylimits.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    ratelimits.init_app(app)
    security_headers.init_app(app)
    app.register_blueprint(signin.bp)
    app.register_blueprint(identity.bp)
    # [/area: security]

    # [area: robustness, issue 13] extensions and blueprints below this line
    # [/area: robustness]

    # [area: matching, issue 14] extensions and blueprints below this line
    from webapp import corrections

    app.register_blueprint(corrections.bp)
    # [/area: matching]

    # [area: analysis, issue 18] extensions and blueprints below this line
    from webapp import search

    app.register_blueprint(search.bp)
    # [/area: analysis]

    # [area: operations, issue 16] extensions and blueprints below this line
    from flask_wtf.csrf import generate_csrf

    from snapmatch import metrics as prometheus_files
    from webapp import metrics, rq_dashboard_mount

    # Pages render the token in their meta tag; CSRFProtect (security) registers the same function.
    app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
    prometheus_files.remove_dead_process_files()
    app.register_blueprint(metrics.bp)
    rq_dashboard_mount.init_app(app, settings.REDIS_URL)
    # [/area: operations]

    # [area: pages, issue 15] extensions and blueprints below this line
    from webapp import downloads, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(downloads.bp)
    # [/area: pages]

    # [area: watcher, issue 17] extensions and blueprints below this line
    # [/area: watcher]

    # [area: openapi, issue 13] extensions and blueprints below this line
    from webapp import openapi

    app.register_blueprint(openapi.bp)
    # [/area: openapi]

    return app
