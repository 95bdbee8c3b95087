#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install docker.io and debootstrap when missing,
# start dockerd when it is not answering (the host has no systemd), wait until `docker info` works.
set -euo pipefail

log() { printf 'harness: %s\n' "$*" >&2; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

log "starting dockerd (log: /var/log/dockerd.log)"
# setsid: the daemon must outlive the shell (and process group) that started it.
setsid -f dockerd >/var/log/dockerd.log 2>&1 </dev/null
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is answering"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2
exit 1
