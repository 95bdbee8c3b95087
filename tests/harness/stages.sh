#!/usr/bin/env bash
# `make test`: run each stage (a make target) in turn and stop at the first that fails; the time of
# every stage that ran is printed at the end either way, so a slow stage shows in every CI log.
set -uo pipefail
rows=()
status=0
total=$SECONDS
for stage in "$@"; do
  start=$SECONDS
  "${MAKE:-make}" --no-print-directory "$stage"
  status=$?
  rows+=("$(printf '  %-10s %6d s  %s' "$stage" $((SECONDS - start)) "$([[ $status == 0 ]] && echo passed || echo FAILED)")")
  [[ $status == 0 ]] || break
done
echo "== make test: time per stage"
printf '%s\n' "${rows[@]}"
printf '  %-10s %6d s\n' total $((SECONDS - total))
exit "$status"
