#!/bin/sh
# The monitoring profile's Prometheus: write the scrape token from the environment where the config
# expects it, then run Prometheus on its data volume with monitoring/'s config and rules
# (mounted at /etc/trainyard). Without a token set, it sends a placeholder that an open /metrics ignores.
set -eu
mkdir -p /prometheus/secrets /prometheus/data
umask 077
printf '%s' "${TRAINYARD_METRICS_TOKEN:-unset}" > /prometheus/secrets/metrics_token
exec prometheus \
  --config.file=/etc/trainyard/prometheus.yml \
  --storage.tsdb.path=/prometheus/data \
  --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-15d}" \
  --web.listen-address=:9090 \
  "$@"
