#!/usr/bin/env bash
# Build the test host images: Debian with systemd as PID 1, made with debootstrap + `docker import`
# (no image registry is reachable). Each image is tagged clinic-host:<release>-<recipe hash> and
# clinic-host:<release>; when the recipe (this file, the package list, the mirror and the extra CA
# certificates) has not changed, the cached image is reused.
#
# Settings (environment):
#   CLINIC_IMAGE_RELEASES      releases to build (default: "bookworm trixie")
#   CLINIC_IMAGE_MIRROR        Debian mirror (default: http://deb.debian.org/debian)
#   CLINIC_IMAGE_EXTRA_CA_DIR  directory of extra *.crt CA certificates trusted inside the image, for
#                              networks behind a TLS-inspecting proxy (default:
#                              /usr/local/share/ca-certificates; an empty or missing one adds none)
set -euo pipefail

releases=${CLINIC_IMAGE_RELEASES:-bookworm trixie}
mirror=${CLINIC_IMAGE_MIRROR:-http://deb.debian.org/debian}
ca_dir=${CLINIC_IMAGE_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
# What every cloud host of the platform has before Ansible touches it: systemd, Python, sudo, sshd.
packages=systemd,systemd-sysv,python3,python3-apt,sudo,iproute2,procps,ca-certificates,openssh-server

log() { printf 'harness: %s\n' "$*" >&2; }

extra_cas() {
  [ -d "$ca_dir" ] || return 0
  find "$ca_dir" -maxdepth 1 -type f -name '*.crt' | sort
}

recipe_hash() {
  local release=$1
  {
    cat "${BASH_SOURCE[0]}"
    printf '%s\n' "$release" "$mirror" "$packages"
    extra_cas | while read -r crt; do cat "$crt"; done
  } | sha256sum | cut -c1-12
}

build() {
  local release=$1 tag=$2 rootfs
  rootfs=$(mktemp -d "/var/tmp/clinic-host-${release}.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$rootfs'" RETURN
  log "debootstrap ${release} into ${rootfs}"
  debootstrap --variant=minbase --include="$packages" "$release" "$rootfs" "$mirror" >"${rootfs}.log" 2>&1 || {
    tail -n 30 "${rootfs}.log" >&2
    return 1
  }
  rm -f "${rootfs}.log"
  # Containers cannot load kernel modules: without this mask trixie reports "degraded".
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-modules-load.service"
  # Host keys are made on first boot, as cloud images do, so no two containers share them.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  cat >"$rootfs/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Generate missing SSH host keys (test image)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
  ln -sf ../ssh-host-keys.service "$rootfs/etc/systemd/system/multi-user.target.wants/ssh-host-keys.service"
  # A fresh machine id per container, made by systemd at boot.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/lib/dbus/machine-id"
  extra_cas | while read -r crt; do cp "$crt" "$rootfs/usr/local/share/ca-certificates/"; done
  chroot "$rootfs" update-ca-certificates >/dev/null
  chroot "$rootfs" apt-get clean
  # No package lists, and a list directory that looks stale, as on a cloud image: the first
  # `apt` task of a role must refresh the cache (cache_valid_time sees the directory's age).
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs/var/lib/apt/periodic/update-success-stamp"
  touch -d @0 "$rootfs/var/lib/apt/lists"
  log "importing ${tag}"
  tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL clinic.infra.recipe=${tag##*-}" \
    - "$tag" >/dev/null
}

for release in $releases; do
  hash=$(recipe_hash "$release")
  tag="clinic-host:${release}-${hash}"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "${tag} is cached"
  else
    build "$release" "$tag"
  fi
  docker tag "$tag" "clinic-host:${release}"
  # Drop images of older recipes of this release (one still used by a container is kept).
  docker images --format '{{.Repository}}:{{.Tag}}' "clinic-host" |
    grep -E "^clinic-host:${release}-" | grep -v -x "$tag" | xargs -r docker rmi >/dev/null 2>&1 || true
done
