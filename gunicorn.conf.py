"""How the web process runs; gunicorn reads this file from the working directory, so the Procfile,
docker-compose, the tests and bench/ all start the same server.

gevent workers: an open progress stream (SSE) waits on Redis as a parked greenlet instead of
holding one of a few request threads (with gthread, 200 open streams starved every other request;
BENCHMARKS.md, "Live progress streams"). psycopg 3 and redis-py cooperate with gevent's
monkey-patching, which the gevent worker applies before it imports the app.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
# Simultaneous connections per worker (open streams included).
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = 120
# Open streams end at shutdown; do not wait 30 s for them.
graceful_timeout = 10
