#!/usr/bin/env bash
# Start a Docker engine for the docker-backend tests; safe to run again while it is up.
# There is no systemd here, so dockerd runs in the background with its log in
# ${DOCKERD_LOG:-/tmp/dockerd.log}. Prints one line saying what happened.
set -euo pipefail

log="${DOCKERD_LOG:-/tmp/dockerd.log}"

if docker info >/dev/null 2>&1; then
    echo "docker: engine already running ($(docker version --format '{{.Server.Version}}'))"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker: dockerd is missing and installing it needs root (apt-get install docker.io)" >&2
        exit 1
    fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io) \
        >>"$log" 2>&1 || { echo "docker: apt-get install docker.io failed; see $log" >&2; exit 1; }
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker: dockerd is not running and starting it needs root" >&2
        exit 1
    fi
    nohup dockerd >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker: engine started ($(docker version --format '{{.Server.Version}}'), log $log)"
        exit 0
    fi
    sleep 1
done
echo "docker: engine did not answer within 60 s; see $log" >&2
exit 1
