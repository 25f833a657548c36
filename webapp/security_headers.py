"""Headers every response carries so browsers treat our pages conservatively: no framing by other
sites (clickjacking of /login and the admin page), no MIME sniffing, referrers kept on this site."""

from __future__ import annotations

from flask import Flask, Response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        csp = response.headers.get("Content-Security-Policy")
        if csp is None:
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        elif "frame-ancestors" not in csp:
            response.headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'"
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
