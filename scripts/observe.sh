#!/usr/bin/env bash
# `make observe`: Prometheus from the local install (Debian: apt-get install prometheus) with
# prometheus/prometheus.yml and its rules, scraping the services already running on 8001/8002
# (make run-all), or every box listed by `make fleet-targets`: the targets are read from
# deploy/prometheus/targets/*.json, written here for 127.0.0.1 when none exist yet.
# Data goes to a fresh temp dir; the PID file is logs/run/prometheus.pid.
#   PROMETHEUS_LISTEN (default 127.0.0.1:9090)   stop: kill "$(cat logs/run/prometheus.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
command -v prometheus >/dev/null || {
  echo "prometheus is not installed: sudo apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
}
listen=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
pid_file=logs/run/prometheus.pid
mkdir -p logs/run
if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  echo "Prometheus already runs (pid $(cat "$pid_file")): http://$listen"
  exit 0
fi
python3 scripts/fleet_targets.py --hosts 127.0.0.1 --if-missing
data=$(mktemp -d "${TMPDIR:-/tmp}/aiml-prometheus.XXXXXX")
nohup prometheus --config.file=prometheus/prometheus.yml --storage.tsdb.path="$data" \
  --web.listen-address="$listen" >logs/prometheus.log 2>&1 &
echo $! >"$pid_file"
for _ in $(seq 1 50); do
  if curl -fsS "http://$listen/-/ready" >/dev/null 2>&1; then
    echo "Prometheus: http://$listen (pid $(cat "$pid_file"), data in $data, log logs/prometheus.log)"
    exit 0
  fi
  kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -20 logs/prometheus.log >&2; rm -f "$pid_file"; exit 1; }
  sleep 0.2
done
echo "Prometheus did not answer on http://$listen within 10 s: see logs/prometheus.log" >&2
exit 1
