"""A loopback HTTP proxy that counts what reaches the server: which file names arrived in complete upload
bodies, and what the server answered for each. Tests put it between the watcher and gunicorn to prove
"exactly once" from outside the watcher. When the server is down it answers 502 (as a real proxy does)."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_UPLOAD = re.compile(r"^/api/events/\d+/photos$")
_FILENAME = re.compile(rb'Content-Disposition: form-data; name="files"; filename="([^"]+)"')
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class CountingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.bodies: Counter[str] = Counter()  # file name -> complete upload bodies that carried it
        self.answers: Counter[tuple[str, str]] = Counter()  # (file name, status) from 202 answers
        self.upload_requests = 0
        self.check_requests = 0
        self.bad_gateway = 0  # answers given while the server was down
        self.statuses: Counter[int] = Counter()  # status of every answer relayed
        self.answer_delay = 0.0  # hold upload answers back, so a killed client leaves them unread
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    self.close_connection = True
                    return  # the client went away mid-body: nothing is forwarded
                is_upload = self.command == "POST" and bool(_UPLOAD.match(self.path))
                names = [m.decode() for m in _FILENAME.findall(body)] if is_upload else []
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    status, reply_headers = response.status, response.getheaders()
                    conn.close()
                except OSError:
                    status, data = 502, json.dumps({"error": {"code": "bad_gateway", "message": "down"}}).encode()
                    reply_headers = [("Content-Type", "application/json")]
                with proxy.lock:
                    if is_upload:
                        proxy.upload_requests += 1
                    elif self.path.endswith("/photos/check"):
                        proxy.check_requests += 1
                    proxy.statuses[status] += 1
                    if status == 502:
                        proxy.bad_gateway += 1
                    if is_upload and status == 202:
                        proxy.bodies.update(names)
                        for photo in json.loads(data).get("photos", []):
                            proxy.answers[(photo["filename"], photo["status"])] += 1
                if is_upload and proxy.answer_delay:
                    time.sleep(proxy.answer_delay)
                self.send_response(status)
                for key, value in reply_headers:
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> Counter[str]:
        """File name -> times the server answered "queued" for it."""
        with self.lock:
            return Counter({name: n for (name, status), n in self.answers.items() if status == "queued"})
