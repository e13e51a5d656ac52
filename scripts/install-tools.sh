#!/usr/bin/env bash
# The real clients and peers that `npm test` and `npm run bench` drive, from
# Debian: tar, zstd; losetup for block devices; the NBD clients qemu-io/
# qemu-img, nbdcopy/nbdinfo, fio; nbdkit and qemu-nbd (the NBD benchmark's
# peers); Ceph's radosgw (the S3 store) and rclone (its benchmark peer).
# Installed only when missing, so a machine that has them needs no network.
# Called by .ci/run and by `npm run bench`; needs root when anything is missing.
set -euo pipefail

need=()
command -v zstd >/dev/null || need+=(zstd)
command -v tar >/dev/null || need+=(tar)
command -v losetup >/dev/null || need+=(util-linux)
command -v qemu-io >/dev/null || need+=(qemu-utils)
command -v nbdcopy >/dev/null || need+=(libnbd-bin)
command -v nbdkit >/dev/null || need+=(nbdkit)
command -v fio >/dev/null || need+=(fio)
command -v strace >/dev/null || need+=(strace)   # the power-cut test traces the server's syscalls
command -v e2fsck >/dev/null || need+=(e2fsprogs)   # mkfs.ext4 and e2fsck for the drill-fsck sample (nbdfuse comes with libnbd-bin)
# The S3 store of the vault tests and the s3 benchmark (scripts/s3-peer.sh starts it), and rclone, its benchmark peer.
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v curl >/dev/null || need+=(curl)
command -v rclone >/dev/null || need+=(rclone)
command -v openssl >/dev/null || need+=(openssl)   # the tapes benchmark's import peer (openssl dgst -sha256)
command -v xxhsum >/dev/null || need+=(xxhash)   # checks an extracted tape's segment hashes (xxhsum -c), as an operator would
command -v b3sum >/dev/null || need+=(b3sum)   # checks a tape's own hash (BLAKE3, tape format 5), as an operator would
# promtool checks the /metrics exposition in the metrics test.
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-tools: missing ${need[*]}; as root: apt-get update && apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
