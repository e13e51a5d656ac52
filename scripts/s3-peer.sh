#!/bin/bash
# A real S3 store for the tests and the benchmark: Ceph's RADOS gateway over a
# one-host Ceph cluster (1 mon, 1 osd), on 127.0.0.1 only, no systemd, every
# file under DIR. Needs Debian's radosgw ceph-mon ceph-osd curl.
#
#   s3-peer.sh start DIR [memstore|bluestore]   memstore: objects in RAM (1 GiB cap)
#   s3-peer.sh stop DIR                         every daemon
#   s3-peer.sh stop-rgw DIR | start-rgw DIR     only the gateway (fault tests)
#
# Endpoint http://127.0.0.1:$RGW_PORT (default 7480); the monitor on
# $MON_PORT (msgr2, default 3300) and $MON_V1_PORT (default 6789), so that
# two stores can run side by side in different DIRs; S3 user with
# $ACCESS_KEY / $SECRET_KEY (defaults below); a bucket is not created.
set -euo pipefail
cmd=${1:?usage: s3-peer.sh start|stop|stop-rgw|start-rgw DIR [memstore|bluestore]}
DIR=$(realpath -m "${2:?usage: s3-peer.sh $cmd DIR}")
STORE=${3:-memstore}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
MON_V1_PORT=${MON_V1_PORT:-6789}
ACCESS_KEY=${ACCESS_KEY:-jshipaccesskey}
SECRET_KEY=${SECRET_KEY:-jshipsecretkey}
export CEPH_CONF="$DIR/ceph.conf"

wait_http() {
  for _ in $(seq 240); do curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/" && return 0; sleep 0.25; done
  echo "s3-peer: radosgw did not answer on port $RGW_PORT (log: $DIR/log/client.rgw.gw.log)" >&2
  return 1
}

stop_pid() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

case "$cmd" in
start)
  for p in ceph-mon ceph-osd radosgw curl; do
    command -v "$p" >/dev/null || { echo "s3-peer: $p is missing: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd curl" >&2; exit 1; }
  done
  [ -d "$DIR/run" ] && "$0" stop "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"; mkdir -p "$DIR"/{log,run,mon,osd,rgw}
  cat > "$CEPH_CONF" <<EOF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
run dir = $DIR/run
admin socket = $DIR/run/\$cluster-\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc secure
ms client mode = crc secure
mon warn on insecure global id reclaim allowed = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail crit = 0
mon data avail warn = 0
mon cluster log file = $DIR/log/cluster.log
[mon.a]
mon data = $DIR/mon
public addrv = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
[osd.0]
osd data = $DIR/osd
osd objectstore = $STORE
memstore device bytes = 1073741824
bluestore block create = true
bluestore block size = 17179869184
bluestore block db create = false
bluestore block wal create = false
osd class load list = *
osd class default list = *
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
rgw dns name = localhost
# Deleted objects' data is collected soon, not after the default two hours (benchmarks delete and rewrite GiBs).
rgw gc obj min wait = 10
rgw gc processor period = 10
EOF
  ceph-mon --id a --mkfs --keyring /dev/null >"$DIR/log/setup.log" 2>&1
  ceph-mon --id a
  timeout 60 ceph status >>"$DIR/log/setup.log" 2>&1
  id=$(ceph osd create 2>>"$DIR/log/setup.log")
  ceph osd crush add "osd.$id" 1 root=default >>"$DIR/log/setup.log" 2>&1
  ceph-osd --id "$id" --mkfs >>"$DIR/log/setup.log" 2>&1
  ceph-osd --id "$id"
  for _ in $(seq 240); do ceph osd stat 2>/dev/null | grep -q '1 up' && break; sleep 0.25; done
  radosgw -n client.rgw.gw
  wait_http
  radosgw-admin user create --uid=jship --display-name=jship --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$DIR/log/setup.log" 2>&1
  echo "s3-peer: ready at http://127.0.0.1:$RGW_PORT ($STORE)"
  ;;
stop)
  for f in "$DIR"/run/*.pid; do stop_pid "$f"; done
  ;;
stop-rgw)
  stop_pid "$DIR/run/client.rgw.gw.pid"
  ;;
start-rgw)
  radosgw -n client.rgw.gw
  wait_http
  ;;
*)
  echo "usage: s3-peer.sh start|stop|stop-rgw|start-rgw DIR [memstore|bluestore]" >&2
  exit 2
  ;;
esac
