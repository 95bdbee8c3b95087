#!/usr/bin/env bash
# Hardening benchmark: Lynis hardening index of a fresh host before and after base_hardening, the
# converge time, and the no-op re-run's time and changed count; SSH key login must still work.
# Last line: lynis_before=N lynis_after=M converge_s=S rerun_s=R rerun_changed=C
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/bench/hardening
bench_dir=$(mktemp -d)
export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks

destroy() {
  ansible-playbook -i "$here/inventory.yml" molecule/resources/destroy.yml -e "@$here/platforms.yml" >/dev/null
  rm -rf "$bench_dir"
}
trap destroy EXIT

lynis_index() {
  docker exec bench-target lynis audit system --quick --no-colors >"$bench_dir/lynis-$1.log" 2>&1
  grep -oP 'Hardening index : \K[0-9]+' "$bench_dir/lynis-$1.log"
}

recap_changed() {
  grep -oP '^bench-target\s+:.*\bchanged=\K[0-9]+' "$1"
}

ansible-playbook -i "$here/inventory.yml" molecule/resources/create.yml -e "@$here/platforms.yml" >/dev/null
ansible-playbook -i "$here/inventory.yml" "$here/prepare.yml" -e "bench_dir=$bench_dir" >/dev/null
before=$(lynis_index before)

start=$(date +%s%N)
ansible-playbook -i "$here/inventory.yml" "$here/converge.yml" -e "bench_dir=$bench_dir" >"$bench_dir/converge.log"
converge_s=$((($(date +%s%N) - start) / 1000000000))

start=$(date +%s%N)
ansible-playbook -i "$here/inventory.yml" "$here/converge.yml" -e "bench_dir=$bench_dir" >"$bench_dir/rerun.log"
rerun_s=$((($(date +%s%N) - start) / 1000000000))

after=$(lynis_index after)
docker exec bench-client ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -i /root/.ssh/id_ed25519 operator@172.30.43.11 true ||
  { echo "bench: SSH key login failed after hardening" >&2; exit 1; }

printf 'Lynis suggestions left after hardening:\n' >&2
grep -E '^\s+\* ' "$bench_dir/lynis-after.log" | head -n 40 >&2 || true
printf 'lynis_before=%s lynis_after=%s converge_s=%s rerun_s=%s rerun_changed=%s\n' \
  "$before" "$after" "$converge_s" "$rerun_s" "$(recap_changed "$bench_dir/rerun.log")"
