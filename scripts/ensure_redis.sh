#!/usr/bin/env bash
# Print a REDIS_URL that answers: the configured one, or a private redis-server started from PATH.
set -euo pipefail
url="${REDIS_URL:-redis://localhost:6379/0}"
py="${PYTHON:-.venv/bin/python}"
if "$py" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$url" 2>/dev/null; then
  echo "$url"; exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "Nothing answers at $url and redis-server is not installed." >&2
  echo "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
  echo "or set REDIS_URL to a Redis you run." >&2
  exit 1
fi
port=6390
mkdir -p var/redis
if ! "$py" -c "import redis; redis.Redis(port=$port, socket_connect_timeout=1).ping()" 2>/dev/null; then
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$PWD/var/redis" \
    --daemonize yes --logfile "$PWD/var/redis/redis.log" --pidfile "$PWD/var/redis/redis.pid" >&2
  for _ in $(seq 50); do
    "$py" -c "import redis; redis.Redis(port=$port, socket_connect_timeout=1).ping()" 2>/dev/null && break
    sleep 0.1
  done
  echo "Started a private redis-server on 127.0.0.1:$port (stop it with: kill \$(cat var/redis/redis.pid))" >&2
fi
echo "redis://127.0.0.1:$port/0"
