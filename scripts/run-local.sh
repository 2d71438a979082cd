#!/usr/bin/env bash
# `make run`: the SPP sandbox, migrations on SQLite, and the web process with the embedded worker.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
PORT=${PORT:-8000}
SANDBOX_PORT=${SANDBOX_PORT:-8081}
# .env (written from .env.example on the first run, below): what the shell sets wins
ENV_FILE=${ENV_FILE:-.env}
if [[ -f "$ENV_FILE" ]]; then
  eval "$("$PY" scripts/local_env.py exports "$ENV_FILE")"
fi
export API_TOKEN=${API_TOKEN:-dev-api-token}
export SPP_API_URL=${SPP_API_URL:-http://127.0.0.1:$SANDBOX_PORT}
export SPP_API_TOKEN=${SPP_API_TOKEN:-sandbox-token}
export BRIDGE_ADMIN_TOKEN=${BRIDGE_ADMIN_TOKEN:-dev-admin-token}
export BRIDGE_EMBEDDED_WORKER=true
export LOG_FORMAT=${LOG_FORMAT:-text}
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-1}
export PORT

# gunicorn.conf.py sets reuse_port, so a second web would bind the same port and take half the
# requests: check first. A bind without SO_REUSEPORT fails while anything listens there.
port_free() {
  "$PY" - "$1" <<'PY'
import socket, sys
with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
}
ports=("$PORT")
if [[ "$SPP_API_URL" == "http://127.0.0.1:$SANDBOX_PORT" ]]; then ports+=("$SANDBOX_PORT"); fi
for port in "${ports[@]}"; do
  if ! port_free "$port"; then
    echo "error: port $port is already in use (another \`make run\`?); stop it, or choose others: make run PORT=... SANDBOX_PORT=..." >&2
    exit 1
  fi
done

wrote_env=""
if [[ ! -f "$ENV_FILE" ]]; then
  "$PY" scripts/local_env.py write .env.example "$ENV_FILE"
  wrote_env="    wrote $ENV_FILE (from .env.example): the flask CLI reads it, e.g. in a second shell:
      $BIN/flask --app wsgi bridge check
"
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/flask" --app wsgi bridge migrate
if [[ "$SPP_API_URL" == "http://127.0.0.1:$SANDBOX_PORT" ]]; then
  "$BIN/flask" --app wsgi bridge sandbox --port "$SANDBOX_PORT" --token "$SPP_API_TOKEN" &
  pids+=($!)
fi
"$BIN/gunicorn" --config gunicorn.conf.py --bind "127.0.0.1:$PORT" wsgi:app &
pids+=($!)

for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<MSG

  spp-ticket-bridge is running
    web (with embedded worker)  http://127.0.0.1:$PORT      database: instance/bridge.db (SQLite)
    SPP sandbox                 $SPP_API_URL   (tickets: $SPP_API_URL/_sandbox/tickets)
    sources file                ${BRIDGE_SOURCES_FILE:-config/sources.yml}
    admin page                  http://127.0.0.1:$PORT/admin   (token: $BRIDGE_ADMIN_TOKEN)
    admin API, metrics          http://127.0.0.1:$PORT/api/events, /metrics, /openapi.json
$wrote_env
  Post a sample ticket request:
    curl -s -H 'X-Bridge-Token: $API_TOKEN' -H 'Content-Type: application/json' -d '{"email":"alice@example.com","name":"Alice","subject":"Hello","message":"My first ticket"}' http://127.0.0.1:$PORT/hooks/api

  Post an email (its attachments go with the ticket's first message; a reply joins the ticket):
    curl -s -H 'X-Bridge-Token: $API_TOKEN' -H 'Content-Type: message/rfc822' --data-binary @mail.eml http://127.0.0.1:$PORT/hooks/mail

  Then see the event with its ticket ID:
    curl -s -H 'Authorization: Bearer $BRIDGE_ADMIN_TOKEN' 'http://127.0.0.1:$PORT/api/events?source=api&limit=1'

  Ctrl-C stops everything.

MSG
if [[ "${BRIDGE_DEMO:-true}" == "true" && "$SPP_API_URL" == "http://127.0.0.1:$SANDBOX_PORT" ]]; then
  "$PY" scripts/demo_conversation.py --bridge "http://127.0.0.1:$PORT" --sandbox "$SPP_API_URL" || true
  echo
fi
wait -n "${pids[@]}"
