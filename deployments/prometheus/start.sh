#!/bin/sh
# Entrypoint of the stack's prometheus service (official prom/prometheus and driftloop/prometheus:local alike):
# copy the config with this stack's ports (SLOT_PORTS="blue,green", PROMETHEUS_PORT) into the data volume,
# then exec Prometheus listening on BIND_ADDRESS:PROMETHEUS_PORT. CONFIG_SOURCE and DATA_DIR exist for tests.
set -eu
: "${SLOT_PORTS:=8101,8102}"
: "${PROMETHEUS_PORT:=9090}"
: "${BIND_ADDRESS:=127.0.0.1}"
src="${CONFIG_SOURCE:-/etc/driftloop/prometheus}"
data="${DATA_DIR:-/prometheus}"
blue=${SLOT_PORTS%%,*}
green=${SLOT_PORTS##*,}
mkdir -p "$data/config" "$data/data"
sed -e "s/slot-blue:8101/slot-blue:$blue/" \
    -e "s/slot-green:8102/slot-green:$green/" \
    -e "s/prometheus:9090/prometheus:$PROMETHEUS_PORT/" \
    "$src/prometheus.yml" > "$data/config/prometheus.yml"
cp "$src/alerts.yml" "$data/config/alerts.yml"
exec prometheus \
  --config.file="$data/config/prometheus.yml" \
  --storage.tsdb.path="$data/data" \
  --storage.tsdb.retention.time="${RETENTION:-15d}" \
  --web.listen-address="$BIND_ADDRESS:$PROMETHEUS_PORT" \
  --web.enable-lifecycle
