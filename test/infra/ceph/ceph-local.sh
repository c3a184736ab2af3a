#!/usr/bin/env bash
# A real single-node Ceph (one mon, one bluestore OSD in a sparse file, radosgw) on 127.0.0.1,
# in a scratch directory, from Debian's packages. No systemd, containers or kernel modules.
#
#   ceph-local.sh install        install the packages when missing (root; apt)
#   ceph-local.sh up DIR         bring the cluster up in DIR (created), create an S3 user, print
#                                KEY=value lines: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, CEPH_CONF
#   ceph-local.sh down DIR       stop the daemons started in DIR (rgw, osd, mon) and remove DIR
#
# Ports are fixed (3300, 6789, 6800-7300, 7480): one cluster per machine at a time. The mon
# refuses to start when the filesystem holding DIR is 95 % full. The OSD's device is a sparse
# 64 GiB file: it takes only what is written, and a full-size benchmark writes ~15 GiB (at 95 % of
# the device the OSD stops taking writes and every PUT hangs).
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)
RGW_PORT=7480
ACCESS_KEY=blocksnaptestaccess
SECRET_KEY=blocksnaptestsecret0123456789abcdefghij

log() { printf 'ceph-local: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

have_binaries() { command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && command -v radosgw >/dev/null && command -v ceph >/dev/null; }

cmd_install() {
  have_binaries && return 0
  [ "$(id -u)" = 0 ] || die "ceph packages missing and not root: apt-get install ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Post-install scripts complain that systemd is absent; apt still exits 0.
  if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1 || true
  fi
  have_binaries || die "installing ${PACKAGES[*]} failed"
}

write_conf() {
  local d=$1 fsid=$2
  cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public network = 127.0.0.1/32
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $d/\$name.keyring
run dir = $d/run
admin socket = $d/run/\$name.asok
pid file = $d/run/\$name.pid
log file = $d/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon max pg per osd = 1000
[mon]
mon data = $d/mon/\$id
[osd]
osd data = $d/osd/\$id
osd objectstore = bluestore
bluestore block path = $d/osd-\$id.block
bluestore block create = true
bluestore block size = 68719476736
bluestore cache size = 268435456
osd op num shards = 1
osd op num threads per shard = 2
[client]
admin socket =
[client.rgw.a]
admin socket = $d/run/\$name.asok
# tcp_nodelay: without it, the body of a small response (a listing, a GET) waits ~40 ms behind
# its headers for the delayed ACK of a keep-alive client (docs/design.md "Replication").
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $d/rgw/\$id
rgw gc obj min wait = 60
rgw gc processor period = 60
CONF
}

wait_for() { # seconds description command...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || return 1
    sleep 0.5
  done
}

osd_up() { ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }
rgw_up() { curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/" || curl -s "http://127.0.0.1:$RGW_PORT/" | grep -q ListAllMyBuckets; }

cmd_up() {
  local d=$1
  have_binaries || die "ceph binaries missing; run: $0 install"
  mkdir -p "$d"
  d=$(realpath "$d")
  mkdir -p "$d"/{run,log,mon/a,osd,rgw/rgw.a}
  export CEPH_CONF=$d/ceph.conf
  local fsid; fsid=$(uuidgen)
  write_conf "$d" "$fsid"
  ceph-authtool --create-keyring "$d/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$d/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$d/mon.keyring" --import-keyring "$d/client.admin.keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' "$d/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$d/monmap" --keyring "$d/mon.keyring" 2>"$d/log/mkfs.log" || die "mon mkfs failed: $(tail -n 20 "$d/log/mkfs.log")"
  ceph-mon -i a 2>>"$d/log/mkfs.log" || die "ceph-mon did not start: $(tail -n 20 "$d/log/mon.a.log" 2>/dev/null)"
  wait_for 30 mon ceph -s --connect-timeout 5 || die "mon not answering: $(tail -n 20 "$d/log/mon.a.log" 2>/dev/null)"

  local uuid key id
  uuid=$(uuidgen); key=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$key\"}" | ceph osd new "$uuid" -i -)
  mkdir -p "$d/osd/$id"
  ceph-authtool --create-keyring "$d/osd.$id.keyring" --name "osd.$id" --add-key "$key" >/dev/null
  ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1 || die "osd mkfs failed: $(tail -n 20 "$d/log/osd.$id.log")"
  ceph-osd -i "$id" 2>>"$d/log/mkfs.log" || die "ceph-osd did not start"
  wait_for 60 osd osd_up || die "osd not up: $(tail -n 20 "$d/log/osd.$id.log")"

  ceph auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' -o "$d/client.rgw.a.keyring" >/dev/null
  radosgw -n client.rgw.a || die "radosgw did not start"
  wait_for 90 radosgw rgw_up || die "radosgw not answering: $(tail -n 20 "$d/log/client.rgw.a.log")"
  radosgw-admin user create --uid=blocksnap-test --display-name=blocksnap-test \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  printf 'S3_ENDPOINT=http://127.0.0.1:%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nCEPH_CONF=%s\n' "$RGW_PORT" "$ACCESS_KEY" "$SECRET_KEY" "$CEPH_CONF"
}

cmd_down() {
  local d=$1
  [ -d "$d" ] || return 0
  # Reverse start order: radosgw, then the OSD, then the mon. SIGTERM, then SIGKILL after 10 s.
  local pidfile pid
  for name in client.rgw.a osd mon.a; do
    for pidfile in "$d"/run/"$name"*.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      # A stale pid file may name a pid the kernel has since given to an unrelated process.
      case "$(cat "/proc/$pid/comm" 2>/dev/null)" in ceph-mon|ceph-osd|radosgw) ;; *) continue ;; esac
      kill -TERM "$pid" 2>/dev/null || continue
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
  rm -rf "$d"
}

case "${1:-}" in
  install) cmd_install ;;
  up) [ $# -eq 2 ] || die "usage: $0 up DIR"; cmd_up "$2" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; cmd_down "$2" ;;
  *) die "usage: $0 install | up DIR | down DIR" ;;
esac
