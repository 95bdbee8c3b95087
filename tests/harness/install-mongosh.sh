#!/usr/bin/env bash
# Install the pinned mongosh npm package into a project-local, git-ignored directory, so the MongoDB
# double's contract tests can drive it as a real client. Does nothing when that version is there.
#
#   MONGOSH_VERSION  version to install (default: the pin below)
#   MONGOSH_PREFIX   install directory (default: .venv/mongosh in the checkout, which git and the
#                    linters already ignore)
#
# Needs Node.js >= 16.15 and npm. npm checks TLS certificates: behind a proxy that re-signs TLS,
# make npm trust the proxy's CA (`npm config set cafile /etc/ssl/certs/ca-certificates.crt`, or
# NODE_EXTRA_CA_CERTS pointing at that bundle) instead of turning strict-ssl off.
set -euo pipefail

log() { printf 'harness: %s\n' "$*" >&2; }

version="${MONGOSH_VERSION:-2.12.0}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="${MONGOSH_PREFIX:-$repo/.venv/mongosh}"
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
manifest="$prefix/node_modules/mongosh/package.json"
bin="$prefix/node_modules/.bin/mongosh"

installed_version() {
  [ -f "$manifest" ] || return 0
  node -p 'require(process.argv[1]).version' "$manifest" 2>/dev/null || true
}

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool not found: install Node.js (>= 16.15) and npm to get mongosh $version"
    exit 1
  fi
done

if [ "$(installed_version)" = "$version" ] && [ -x "$bin" ]; then
  exit 0
fi

log "installing mongosh $version from npm into $prefix"
mkdir -p "$prefix"
# Install scripts only build optional native helpers (machine id, DNS, CPU features); mongosh
# works without them, and skipping them needs no compiler and behaves the same on every npm.
if ! npm install --prefix "$prefix" --no-audit --no-fund --save-exact --ignore-scripts \
  --loglevel=error "mongosh@$version"; then
  log "npm install failed; behind a TLS-intercepting proxy see the CA note at the top of $0"
  exit 1
fi

actual="$("$bin" --version)"
if [ "$actual" != "$version" ]; then
  log "expected mongosh $version, $bin reports $actual"
  exit 1
fi
log "mongosh $actual installed: $bin"
