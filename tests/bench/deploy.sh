#!/usr/bin/env bash
# Rolling-deploy benchmark: the deploy scenario's hosts (molecule/deploy: two API nodes behind
# HAProxy, a one-member replica set, moto), converged on 1.0.0, then playbooks/deploy.yml to 2.0.0
# while 60 requests/s go through HAProxy. Last line:
#   requests=N failed=F p50_ms=A p95_ms=B node_cycle_s=C tls=on|off
# BENCH_TLS=on (default): the platform's defaults, MongoDB requiring TLS and the API serving HTTPS
# to HAProxy; BENCH_TLS=off: MongoDB and the API in plaintext, for the cost of TLS.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${BENCH_TLS:=on}" in
  on) BENCH_EXTRA_VARS='{"clinic_mongodb_tls_mode": "requireTLS", "clinic_app_https": true}' ;;
  off) BENCH_EXTRA_VARS='{"clinic_mongodb_tls_mode": "disabled", "clinic_app_https": false}' ;;
  *) echo "bench: BENCH_TLS must be on or off, not '$BENCH_TLS'" >&2; exit 2 ;;
esac
export BENCH_TLS BENCH_EXTRA_VARS
MOLECULE_EPHEMERAL_DIRECTORY=$(mktemp -d)
export MOLECULE_EPHEMERAL_DIRECTORY
trap 'molecule destroy -s deploy >/dev/null 2>&1 || true; rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"' EXIT

molecule destroy -s deploy >/dev/null
molecule create -s deploy >"$MOLECULE_EPHEMERAL_DIRECTORY/create.log" 2>&1 ||
  { tail -n 40 "$MOLECULE_EPHEMERAL_DIRECTORY/create.log" >&2; exit 1; }
molecule converge -s deploy -- -e "$BENCH_EXTRA_VARS" >"$MOLECULE_EPHEMERAL_DIRECTORY/converge.log" 2>&1 ||
  { tail -n 40 "$MOLECULE_EPHEMERAL_DIRECTORY/converge.log" >&2; exit 1; }
python -m tests.bench.deploy
