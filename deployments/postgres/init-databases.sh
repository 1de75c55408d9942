#!/usr/bin/env bash
# /docker-entrypoint-initdb.d script (official postgres image and driftloop/postgres:local): runs once, on an
# empty data directory. One role and one database per consumer, each role owning only its database:
#   prefect   -> database prefect      (Prefect server; its migrations create pg_trgm, a trusted extension)
#   mlflow    -> database mlflow       (MLflow tracking + model registry)
#   driftloop -> database predictions  (the serving slots' prediction log, read by the drift check)
# Passwords come from the environment (compose passes them from .env); psql variables quote them safely.
set -euo pipefail

for var in PREFECT_DB_PASSWORD MLFLOW_DB_PASSWORD DRIFTLOOP_DB_PASSWORD; do
  if [ -z "${!var:-}" ]; then
    echo "init-databases: $var is not set" >&2
    exit 1
  fi
done

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
  --set prefect_pw="$PREFECT_DB_PASSWORD" --set mlflow_pw="$MLFLOW_DB_PASSWORD" \
  --set driftloop_pw="$DRIFTLOOP_DB_PASSWORD" <<'SQL'
CREATE ROLE prefect LOGIN PASSWORD :'prefect_pw';
CREATE DATABASE prefect OWNER prefect;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE ROLE driftloop LOGIN PASSWORD :'driftloop_pw';
CREATE DATABASE predictions OWNER driftloop;
REVOKE ALL ON DATABASE prefect, mlflow, predictions FROM PUBLIC;
SQL
echo "init-databases: created roles and databases prefect, mlflow, predictions"
