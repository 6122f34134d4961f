#!/bin/sh
# The monitoring profile's Prometheus: write the scrape credentials from the environment where the
# config expects them, then run Prometheus on its data volume.
set -eu
mkdir -p /prometheus/secrets /prometheus/data /prometheus/config
umask 077
printf '%s' "${TRAINYARD_METRICS_TOKEN:-unset}" > /prometheus/secrets/metrics_token
printf '%s' "${FLOWER_PASSWORD:-}" > /prometheus/secrets/flower_password
sed "s/@FLOWER_USER@/${FLOWER_USER:-admin}/" /etc/trainyard/prometheus.yml > /prometheus/config/prometheus.yml
cp /etc/trainyard/alerts.yml /prometheus/config/alerts.yml
exec prometheus \
  --config.file=/prometheus/config/prometheus.yml \
  --storage.tsdb.path=/prometheus/data \
  --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-15d}" \
  --web.listen-address=:9090 \
  "$@"
