#!/usr/bin/env bash
# Build the sandbox image offline: a Debian bookworm minbase root filesystem with python3,
# made by debootstrap from Debian's mirror and imported (no registry needed). With a registry,
# `docker build -t IMAGE sandbox/` builds the equivalent image from sandbox/Dockerfile.
set -euo pipefail
IMAGE=${1:-flowpo-sandbox:latest}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "building $IMAGE from a debootstrap root filesystem (about a minute)"
# python3 (not python3-minimal): the runtime needs json and asyncio.
debootstrap --variant=minbase --include=python3 bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
tar -C "$WORK/rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'USER 65534:65534' -c 'WORKDIR /tmp' - "$IMAGE" >/dev/null
echo "built $IMAGE"
