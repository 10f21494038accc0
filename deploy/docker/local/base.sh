#!/usr/bin/env bash
# Local stand-ins for the public base images, for machines that reach no image registry: a Debian
# bookworm root filesystem from debootstrap, imported as modalmesh-local/debian:bookworm, then the
# python, node, nats and prometheus stand-ins built on it (each Dockerfile beside this script). Images that
# exist already are kept. Prints the build arguments that point the compose files at them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
base=modalmesh-local/debian:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$base"; then
  command -v debootstrap >/dev/null || { echo "base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  echo "base.sh: debootstrap bookworm into $rootfs (about a minute)" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
  # As Debian's slim images do: no documentation, manual pages or translations in later installs,
  # and no package caches in the image.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
  cat > "$rootfs/etc/apt/apt.conf.d/90slim" <<'CFG'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$base" >/dev/null
  echo "base.sh: imported $base" >&2
fi

# Build secrets (the CA bundle) need BuildKit, which Compose brings even where the CLI lacks buildx.
# node is built on the python stand-in: a second pass.
for pass in "python nats prometheus" "node"; do
  missing=()
  for service in $pass; do
    image="$(sed -n "/^  $service:/,/image:/s/^ *image: //p" "$here/compose.yml")"
    have "$image" || missing+=("$service")
  done
  [ ${#missing[@]} -eq 0 ] || docker compose -f "$here/compose.yml" build "${missing[@]}" >&2
done

cat <<OUT
PYTHON_IMAGE=modalmesh-local/python:3.11-slim
NODE_IMAGE=modalmesh-local/node:22
NATS_IMAGE=modalmesh-local/nats:2
PROMETHEUS_IMAGE=modalmesh-local/prometheus:2
OUT
