#!/usr/bin/env bash
# One image, several roles. Every server role first refuses missing or placeholder secrets (the same check the stack's
# one-shot `preflight` service runs), then execs its server so it is PID 1's only child (compose adds `init`).
#   check           verify the secrets in the environment, exit 0 or 1
#   prefect-server  Prefect API + UI on PostgreSQL (asyncpg)
#   worker          Docker work pool + its deployments (prefect.docker.yaml), then a Docker worker with a health
#                   port: each flow run is a container of this image
#   mlflow          MLflow tracking server on PostgreSQL (psycopg2), artifacts proxied from a volume, basic auth
#   mlflow-accounts as MLflow's admin: create the loop's and the read-only account (io/mlflow_accounts.py)
#   http-ok PORT PATH  exit 0 when 127.0.0.1:PORT answers GET PATH with status 200 (the compose healthchecks)
#   <anything else> exec'd as given (e.g. `driftloop status`, `bash`)
set -euo pipefail

die() { echo "driftloop-entrypoint: $*" >&2; exit 1; }
need() { [ -n "${!1:-}" ] || die "$1 is not set (see .env.example)"; }

# Every *_PASSWORD and *_SECRET variable in the environment must be set, not a .env.example placeholder, long
# enough and URL-safe: the compose file builds connection URLs from them by plain interpolation.
check_secrets() {
  local name value found=0 bad=0
  for name in $(compgen -e | grep -E '_(PASSWORD|SECRET)$' || true); do
    found=1
    value="${!name}"
    if [ -z "$value" ]; then
      echo "refusing to start: $name is empty" >&2; bad=1
    elif [[ "${value,,}" == *change-me* || "${value,,}" == *changeme* ]]; then
      echo "refusing to start: $name still has the placeholder from .env.example; set a real secret in .env" >&2; bad=1
    elif [ "${#value}" -lt 12 ]; then
      echo "refusing to start: $name is shorter than 12 characters" >&2; bad=1
    elif [[ ! "$value" =~ ^[A-Za-z0-9_.~-]+$ ]]; then
      echo "refusing to start: $name may only contain letters, digits and _ . ~ - (it goes into URLs)" >&2; bad=1
    fi
  done
  [ "$found" = 1 ] || die "no *_PASSWORD or *_SECRET variable in the environment: nothing to check (is .env loaded?)"
  [ "$bad" = 0 ] || exit 1
}

role="${1:-help}"
case "$role" in
  check)
    check_secrets
    echo "driftloop-entrypoint: secrets look real"
    ;;
  prefect-server)
    check_secrets
    need POSTGRES_PORT; need PREFECT_PORT; need PREFECT_DB_PASSWORD; need PREFECT_AUTH_PASSWORD
    export PREFECT_HOME="${PREFECT_HOME:-/var/lib/prefect}"
    export PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg
    export PREFECT_SERVER_DATABASE_HOST="${POSTGRES_HOST:-postgres}"
    export PREFECT_SERVER_DATABASE_PORT="$POSTGRES_PORT"
    export PREFECT_SERVER_DATABASE_USER=prefect
    export PREFECT_SERVER_DATABASE_NAME=prefect
    export PREFECT_SERVER_DATABASE_PASSWORD="$PREFECT_DB_PASSWORD"
    # Every API call but GET /api/health needs it: the worker and the CLI send PREFECT_API_AUTH_STRING.
    export PREFECT_SERVER_API_AUTH_STRING="driftloop:$PREFECT_AUTH_PASSWORD"
    export PREFECT_UI_API_URL="${PREFECT_UI_API_URL:-http://${STACK_PUBLIC_HOST:-127.0.0.1}:$PREFECT_PORT/api}"
    # The UI is copied out of the (read-only to this user) package at start: give it a directory we own.
    export PREFECT_SERVER_UI_STATIC_DIRECTORY="${PREFECT_SERVER_UI_STATIC_DIRECTORY:-$PREFECT_HOME/ui}"
    unset PREFECT_API_URL
    exec prefect server start --host "${STACK_BIND_ADDRESS:-127.0.0.1}" --port "$PREFECT_PORT"
    ;;
  worker)
    check_secrets
    need PREFECT_API_URL; need WORKER_HEALTH_PORT
    need DRIFTLOOP_PROJECT_IMAGE; need DRIFTLOOP_HOME_VOLUME
    pool="${DRIFTLOOP_WORK_POOL:-driftloop-docker}"
    # Idempotent: the pool is created with --overwrite and deployments are upserted by name.
    python - <<'PY'
from pathlib import Path

from driftloop.io.deployments import deploy_all
from driftloop.io.unresponsive_runs import AUTOMATION_NAME, ensure_crash_automation
from driftloop.settings import get_settings

prefect_file = Path("deployments/project/prefect.docker.yaml")
names = deploy_all(get_settings(), Path("/opt/driftloop"), prefect_file, pool_type="docker")
print("driftloop-entrypoint: deployed", ", ".join(names) or "(none reported)", flush=True)
if ensure_crash_automation():
    print("driftloop-entrypoint: created the automation", AUTOMATION_NAME, flush=True)
PY
    # The flow runs send heartbeats (the automation above crashes the silent ones): the Docker worker passes its
    # PREFECT_* settings on to every flow container.
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY="$(python -c 'from driftloop.settings import FLOW_HEARTBEAT_SECONDS as s; print(s)')"
    export PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    export PREFECT_WORKER_WEBSERVER_HOST=127.0.0.1
    export PREFECT_WORKER_WEBSERVER_PORT="$WORKER_HEALTH_PORT"
    export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-${DRIFTLOOP_WORKER_POLL_SECONDS:-5}}"
    exec prefect worker start --pool "$pool" --type docker --with-healthcheck --name "driftloop-worker-$(hostname)"
    ;;
  mlflow)
    check_secrets
    need POSTGRES_PORT; need MLFLOW_PORT; need MLFLOW_DB_PASSWORD; need MLFLOW_ADMIN_PASSWORD; need MLFLOW_FLASK_SECRET
    port="$MLFLOW_PORT"
    hosts="mlflow,mlflow:$port,localhost,localhost:$port,127.0.0.1,127.0.0.1:$port"
    [ -z "${MLFLOW_EXTRA_ALLOWED_HOSTS:-}" ] || hosts="$hosts,$MLFLOW_EXTRA_ALLOWED_HOSTS"
    cd /var/lib/mlflow
    # The store URI holds the password: pass it in the environment (MLflow reads it there), not in argv for ps.
    export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT}/mlflow"
    # MLflow's job runner (about eight huey consumer processes, 250 MB each) serves GenAI features driftloop does
    # not use.
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
    # MLflow's basic-auth app (mlflow-basic-auth.ini: signed-in users read, anonymous get 401). The admin account is
    # created from this password on first start; MLflow has no default one.
    export MLFLOW_AUTH_CONFIG_PATH=/opt/driftloop/deployments/project/mlflow-basic-auth.ini
    export MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"
    export MLFLOW_FLASK_SERVER_SECRET_KEY="$MLFLOW_FLASK_SECRET"
    exec mlflow server --app-name basic-auth \
      --artifacts-destination /var/lib/mlflow/artifacts --serve-artifacts \
      --host "${STACK_BIND_ADDRESS:-127.0.0.1}" --port "$port" --workers "${MLFLOW_WORKERS:-2}" \
      --allowed-hosts "$hosts"
    ;;
  mlflow-accounts)
    check_secrets
    need MLFLOW_TRACKING_URI; need MLFLOW_ADMIN_PASSWORD
    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$MLFLOW_ADMIN_PASSWORD"
    exec python -c "from driftloop.io.mlflow_accounts import main; main()"
    ;;
  http-ok)
    # Bash's /dev/tcp, not Python: a probe every 5 s that started Python cost about 0.2 s of CPU each, 4% of a core
    # per server for every user of the stack. No secrets are checked: it runs beside the server, not as it.
    [ $# -eq 3 ] || die "usage: http-ok PORT PATH"
    exec 3<>"/dev/tcp/127.0.0.1/$2"
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$3" >&3
    read -r -t 4 status <&3
    [[ "$status" == *" 200 "* ]]
    ;;
  help | --help | -h)
    sed -n '2,11p' "$0"
    ;;
  *)
    exec "$@"
    ;;
esac
