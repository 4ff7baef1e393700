#!/usr/bin/env bash
# Make a Docker engine answer: install docker.io and start dockerd when none does (needs root).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then echo "no Docker engine and not root: install Docker yourself" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
mkdir -p /var/log
# A dockerd killed with its session leaves its pid file behind, and a new one refuses to start.
if ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.pid; fi
nohup dockerd >/var/log/flowpo-dockerd.log 2>&1 &
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then echo "docker engine started"; exit 0; fi
  sleep 1
done
echo "dockerd did not answer within 60 s; see /var/log/flowpo-dockerd.log" >&2
exit 1
