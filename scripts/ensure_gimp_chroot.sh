#!/bin/sh
# Build, once, the Debian trixie chroot with GIMP 3 that the GIMP plug-in tests run in.
# GIMP 3 needs trixie's libc, so it cannot be installed on a bookworm host; a chroot
# shares the host's network, so GIMP inside reaches a daemon on the host loopback.
# Idempotent: a complete chroot (stamp file written last) is reused as is.
# Usage: scripts/ensure_gimp_chroot.sh   (prints the chroot path on the last line)
# debootstrap picks its own default Debian mirror; set MIRROR=URL to use another one.
set -eu

MIRROR="${MIRROR:-}"

CACHE="${PAINTBRIDGE_CACHE:-$HOME/.cache/paintbridge}"
CHROOT="$CACHE/gimp-trixie"
STAMP="$CHROOT/.paintbridge-complete"
PACKAGES="gimp python3 python3-gi python3-zmq"

if [ -f "$STAMP" ]; then
    echo "gimp chroot: reusing $CHROOT"
    echo "$CHROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "gimp chroot: building it needs root (debootstrap, chroot); skipping" >&2
    # in CI a skipped host suite would pass unseen: fail instead
    [ "${CI:-}" = true ] && exit 1
    exit 0
fi

start=$(date +%s)
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "gimp chroot: installing debootstrap on the host"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends debootstrap >/dev/null
fi

mkdir -p "$CACHE"
if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
    # A half-built chroot from an interrupted run is started over.
    rm -rf "$CHROOT"
    echo "gimp chroot: debootstrap trixie${MIRROR:+ from $MIRROR}"
    # no MIRROR: no mirror argument, so debootstrap uses its default
    debootstrap --variant=minbase trixie "$CHROOT" ${MIRROR:+"$MIRROR"} \
        >"$CACHE/debootstrap.log" 2>&1 || {
        tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
fi
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
echo "gimp chroot: installing $PACKAGES"
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    update -qq
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends $PACKAGES >"$CACHE/apt.log" 2>&1 || {
    tail -20 "$CACHE/apt.log" >&2; exit 1; }
chroot "$CHROOT" apt-get clean
chroot "$CHROOT" gimp-console-3.0 --version
date -u +%FT%TZ >"$STAMP"
echo "gimp chroot: built in $(( $(date +%s) - start )) s"
echo "$CHROOT"
