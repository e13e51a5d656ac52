#!/usr/bin/env bash
# Nightly export of a jship group to carried media (or any mounted directory).
#
#   nightly-export.sh GROUP_DIR MOUNT_POINT [LOG_FILE]
#
# - one run at a time (flock on the group's lock file companion);
# - exports everything journaled since the last tape, into MOUNT_POINT/jship/<group id>/;
#   on the first day of the week (date +%u = 7) a new base is taken too;
# - verifies what it wrote;
# - logs to LOG_FILE (default /var/log/jship-export.log) and exits non-zero on any failure.
#
# crontab line (every night at 01:30):
#   30 1 * * * /usr/local/bin/nightly-export.sh /srv/jship/prod /mnt/tapes >/dev/null 2>&1
set -euo pipefail
# cron runs with PATH=/usr/bin:/bin; npm installs jship (and node) under /usr/local/bin.
export PATH="/usr/local/bin:/usr/bin:/bin${PATH:+:$PATH}"
group=${1:?usage: nightly-export.sh GROUP_DIR MOUNT_POINT [LOG_FILE]}
mount=${2:?usage: nightly-export.sh GROUP_DIR MOUNT_POINT [LOG_FILE]}
log=${3:-/var/log/jship-export.log}
jship=${JSHIP:-jship}

if ! command -v "$jship" >/dev/null || ! command -v node >/dev/null; then
  echo "$(date -Is) $jship or node not found in $PATH: set JSHIP=/path/to/jship (and put node on PATH)" >>"$log"
  exit 127
fi

exec 9>"$group/.nightly-export.lock"
flock -n 9 || { echo "$(date -Is) another export of $group is running" >>"$log"; exit 1; }

# The tapes must land on the carried disk, never on the file system under an empty mount point
# (the journal is purged once they are written). JSHIP_ALLOW_UNMOUNTED=1 takes a plain directory.
if [ "${JSHIP_ALLOW_UNMOUNTED:-0}" != 1 ] && ! mountpoint -q "$mount"; then
  echo "$(date -Is) $mount is not a mount point (is the disk attached and mounted?): nothing exported, nothing purged" >>"$log"
  exit 1
fi
if [ ! -d "$mount" ]; then
  echo "$(date -Is) $mount is not a directory: nothing exported" >>"$log"
  exit 1
fi
id=$(sed -n 's/.*"groupId": "\([0-9a-f-]*\)".*/\1/p' "$group/group.json")
dest="$mount/jship/$id"
mkdir -p "$dest"

args=(export "$group" --to "$dest/" --json)
[ "$(date +%u)" = 7 ] && args+=(--base)
[ -n "${JSHIP_MEDIA_SIZE:-}" ] && args+=(--media-size "$JSHIP_MEDIA_SIZE")
[ -n "${JSHIP_KEY:-}" ] && args+=(--encrypt-key "$JSHIP_KEY")

{
  echo "$(date -Is) export $group -> $dest"
  if out=$("$jship" "${args[@]}"); then
    echo "$out"
  else
    status=$?
    echo "$out"
    echo "$(date -Is) export FAILED (exit $status)"
    exit "$status"
  fi
  # Verify the tapes just written (their names are in the JSON).
  tapes=$(echo "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const t of JSON.parse(s).tapes)console.log(t.location)})')
  if [ -n "$tapes" ]; then
    # shellcheck disable=SC2086
    "$jship" verify ${JSHIP_KEY:+--key "$JSHIP_KEY"} $tapes || { echo "$(date -Is) verify FAILED"; exit 1; }
  fi
  echo "$(date -Is) done"
} >>"$log" 2>&1
