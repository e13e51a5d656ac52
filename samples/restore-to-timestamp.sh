#!/usr/bin/env bash
# Restore every volume of a replica as it was at a time, into new image files.
#
#   restore-to-timestamp.sh REPLICA_DIR TIME OUT_DIR
#
# TIME is ISO 8601 with a zone (2026-11-24T23:00:00Z, 2026-11-25T00:00:00+01:00)
# or @SECONDS since the epoch. Shows the plan first; restores only if it is not a refusal.
set -euo pipefail
replica=${1:?usage: restore-to-timestamp.sh REPLICA_DIR TIME OUT_DIR}
time=${2:?usage: restore-to-timestamp.sh REPLICA_DIR TIME OUT_DIR}
out=${3:?usage: restore-to-timestamp.sh REPLICA_DIR TIME OUT_DIR}
jship=${JSHIP:-jship}

"$jship" timeline "$replica" | head -n 5
echo
"$jship" restore "$replica" --until "$time" --target "$out/" --dry-run
echo
"$jship" restore "$replica" --until "$time" --target "$out/"
ls -l "$out"
