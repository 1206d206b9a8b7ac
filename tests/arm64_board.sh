#!/bin/sh
# Build (once, cached) an ARM64 "board": a Debian bookworm arm64 userland with python3, numpy and
# ai-edge-litert, run through qemu-user via binfmt_misc; tests start its own sshd on 127.0.0.1
# (tests/board.py). Usage: tests/arm64_board.sh BOARD_DIR
# Needs root (debootstrap, chroot, binfmt_misc). On failure, BOARD_DIR.failed holds one line
# naming the step, which the tests report.
set -u
BOARD=$1
PART=$BOARD.part
FAILED=$BOARD.failed
PIP=${PIP:-pip}
# ai-edge-litert 2.3.0 and every package it pulls in, pinned (the versions of the x86 stack).
WHEELS="ai-edge-litert==2.3.0 numpy==2.4.6 ml_dtypes==0.6.0 flatbuffers==25.12.19 protobuf==7.36.2 \
backports.strenum==1.2.8 tqdm==4.70.1 typing_extensions==4.16.0"
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$(dirname "$BOARD")"
rm -f "$FAILED"

fail() { echo "$1" | tee "$FAILED" >&2; exit 1; }
quiet() { "$@" > "$PART.log" 2>&1 || fail "$STEP failed: $(tail -n 1 "$PART.log")"; }

[ "$(id -u)" = 0 ] || fail "the ARM64 board needs root (debootstrap, chroot, binfmt_misc)"

STEP="apt-get install qemu-user-static debootstrap"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get install -y -q qemu-user-static debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q qemu-user-static debootstrap >/dev/null 2>&1; } \
    || fail "qemu-user-static or debootstrap cannot be installed (apt-get failed)"
fi

BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e $BINFMT/register ]; then
  mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null \
    || fail "binfmt_misc cannot be mounted at $BINFMT (a container without that privilege?)"
fi
if [ ! -e $BINFMT/qemu-aarch64 ]; then
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > $BINFMT/register 2>/dev/null \
    || fail "binfmt_misc refused the qemu-aarch64 entry"
fi
grep -q enabled $BINFMT/qemu-aarch64 || echo 1 > $BINFMT/qemu-aarch64

STAMP="$SUITE $WHEELS"
[ -e "$BOARD/.installed" ] && [ "$(cat "$BOARD/.installed")" = "$STAMP" ] && exit 0

# A debootstrap killed mid-way leaves its /proc and /sys mounts under the half-built tree.
unmount_under() {
  grep -o " $1/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
}
unmount_under "$PART"
rm -rf --one-file-system "$PART" && mkdir -p "$PART" || fail "cannot clear $PART"
STEP="debootstrap --arch arm64 $SUITE"
echo "building the ARM64 board in $BOARD (debootstrap under qemu, a few minutes)" >&2
quiet debootstrap --arch arm64 --variant=minbase --include=python3,python3-venv,openssh-server \
  "$SUITE" "$PART/root" "$MIRROR"
STEP="pip download (aarch64 wheels)"
quiet $PIP download -q --only-binary=:all: --implementation cp --python-version 3.11 \
  --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
  --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
  --no-deps -d "$PART/root/tmp/wheels" $WHEELS
STEP="pip install on the board"
quiet env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$PART/root" sh -c \
  "python3 -m venv /tmp/pip && /tmp/pip/bin/pip install -q --no-index --find-links /tmp/wheels \
   --no-deps --target /usr/local/lib/python3.11/dist-packages $WHEELS && rm -rf /tmp/pip /tmp/wheels"
STEP="the board's python"
quiet env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$PART/root" python3 -c \
  "import platform, numpy, ai_edge_litert.interpreter; assert platform.machine() == 'aarch64'"
rm -rf "$PART/root/var/cache/apt/archives/"*.deb "$PART/root/var/lib/apt/lists/"* "$PART.log"
mkdir -p "$PART/root/run/sshd"
echo "$STAMP" > "$PART/.installed"
unmount_under "$PART"
unmount_under "$BOARD"
rm -rf --one-file-system "$BOARD" && mv "$PART" "$BOARD" || fail "cannot replace $BOARD"
echo "ARM64 board ready: $BOARD" >&2
