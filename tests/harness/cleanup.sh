#!/usr/bin/env bash
# Remove what an earlier (possibly interrupted) test run left behind: every container and network
# that carries the harness label. Images are kept: they are a cache keyed by their recipe.
set -euo pipefail
label="clinic.infra.harness"
containers=$(docker ps -aq --filter "label=${label}")
if [ -n "${containers}" ]; then
  printf 'harness: removing %s leftover container(s)\n' "$(wc -w <<<"${containers}")" >&2
  # shellcheck disable=SC2086 # word splitting of the id list is intended
  docker rm -f ${containers} >/dev/null
fi
networks=$(docker network ls -q --filter "label=${label}")
if [ -n "${networks}" ]; then
  printf 'harness: removing %s leftover network(s)\n' "$(wc -w <<<"${networks}")" >&2
  # shellcheck disable=SC2086
  docker network rm ${networks} >/dev/null
fi
