#!/bin/sh
# tests/sim/selftest.sh: checks the DTR simulator (tests/sim/docker, tests/sim/curl) against
# the seed documents' behaviour, in a temporary directory. Stops at the first mismatch with
# a non-zero exit. Run: sh tests/sim/selftest.sh

set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOST_DIR="$work/host1" NODE_NAME=node1 PATH="$here:$PATH"
unset DTR_SIM_DIR UCP_PASSWORD
mkdir -p "$HOST_DIR"
SIM=$HOST_DIR/dtr-sim
IMG=docker/dtr
UCP="--ucp-url https://ucp.example --ucp-username admin --ucp-insecure-tls"
checks=0

# run CMD...: runs CMD, keeping its exit status, stdout and stderr.
run() {
    STEP="$*"
    "$@" >"$work/out" 2>"$work/err"
    RC=$?
    OUT=$(cat "$work/out")
    ERR=$(cat "$work/err")
}

fail() {
    printf 'selftest FAILED: %s\n  want: %s\n  exit: %s\n  stdout: %s\n  stderr: %s\n' \
        "$STEP" "$1" "$RC" "$OUT" "$ERR" >&2
    exit 1
}

rc_is() { checks=$((checks + 1)); [ "$RC" -eq "$1" ] || fail "exit $1"; }
out_is() { checks=$((checks + 1)); [ "$OUT" = "$1" ] || fail "stdout: $1"; }
out_has() { checks=$((checks + 1)); case $OUT in *"$1"*) ;; *) fail "stdout containing: $1" ;; esac; }
err_has() { checks=$((checks + 1)); case $ERR in *"$1"*) ;; *) fail "stderr containing: $1" ;; esac; }
status_is() { run docker dtr-sim status; out_is "$(printf "$1")"; }
lines() { printf '%s\n' "$@"; }

# --- images: pull, inspect, load ---------------------------------------------------------
run docker image inspect $IMG:2.6.8; rc_is 1; err_has "No such image: $IMG:2.6.8"
run docker pull $IMG:2.6.8; rc_is 0; out_is "Status: Downloaded newer image for $IMG:2.6.8"
run docker pull $IMG:2.6.8; rc_is 0; out_is "Status: Image is up to date for $IMG:2.6.8"
run docker image inspect $IMG:2.6.8; rc_is 0
run env NODE_NAME=node2 docker image inspect $IMG:2.6.8; rc_is 1
touch "$SIM/fail.pull"
run docker pull $IMG:2.6.9; rc_is 1; err_has "fail.pull"
rm "$SIM/fail.pull"
run docker image inspect $IMG:2.6.9; rc_is 1
echo "$IMG:2.5.3" >"$work/dtr-2.5.3.tar"
run docker load -i "$work/dtr-2.5.3.tar"; rc_is 0; out_is "Loaded image: $IMG:2.5.3"
echo "$IMG:2.7.0" >"$work/dtr-2.7.0.tar"
run sh -c 'docker load <"$0"' "$work/dtr-2.7.0.tar"; rc_is 0; out_is "Loaded image: $IMG:2.7.0"
run docker image inspect $IMG:2.7.0; rc_is 0

# --- cluster state, facts, health ---------------------------------------------------------
run docker dtr-sim init --version 2.5.3 --replicas aaa@node1,bbb@node2,ccc@node3; rc_is 0
run docker ps --format '{{.Label "com.docker.dtr.version"}} {{.Label "com.docker.dtr.replica-id"}} {{.Label "com.docker.dtr.node"}}'
rc_is 0; out_is "2.5.3 aaa node1"
run env NODE_NAME=node2 docker ps; out_is "2.5.3 bbb node2"
run env NODE_NAME=node9 docker ps; rc_is 0; out_is ""
status_is 'aaa node1 2.5.3 true\nbbb node2 2.5.3 true\nccc node3 2.5.3 true'
run env HOST_DIR=/nonexistent DTR_SIM_DIR="$SIM" docker dtr-sim status; out_has "bbb node2 2.5.3 true"
run docker info --format '{{.MemTotal}}'; rc_is 0; out_is 34359738368
echo 16 >"$SIM/mem_gib"
run docker info --format '{{.MemTotal}}'; out_is 17179869184
run docker dtr-sim ucp-version; out_is 3.2.5
echo 3.1.0 >"$SIM/ucp_version"
run docker dtr-sim ucp-version; out_is 3.1.0
run docker dtr-sim content-trust; out_is false
run docker run --rm $IMG:2.5.3 ping --replica-id aaa; rc_is 0; out_is '{"Healthy":true}'
run docker dtr-sim set-health bbb false; rc_is 0
run docker run --rm $IMG:2.5.3 ping --replica-id bbb; rc_is 1; out_has '{"Healthy":false'
run docker run --rm $IMG:2.5.3 ping --replica-id zzz; rc_is 1; out_has 'no replica zzz'
run docker dtr-sim set-health bbb true; rc_is 0

# --- upgrade refusals change nothing ------------------------------------------------------
UP="upgrade $UCP --existing-replica-id aaa"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 $UP; rc_is 1; err_has "UCP password missing"
export UCP_PASSWORD=secret
run docker run --rm $IMG:2.6.8 $UP; rc_is 1; err_has "UCP password missing"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 $UP --ucp-password secret; rc_is 1
err_has "never from the command line"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $UP; rc_is 125
err_has "Unable to find image '$IMG:2.6.9' locally"
run docker run --rm -e UCP_PASSWORD $IMG:2.7.0 $UP; rc_is 1
err_has "unsupported upgrade: skip minor version (2.5.3 -> 2.7.0)"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 upgrade $UCP --existing-replica-id zzz; rc_is 1
err_has "existing replica zzz not found"
docker dtr-sim set-health aaa false
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 $UP; rc_is 1; err_has "existing replica aaa is unhealthy"
docker dtr-sim set-health aaa true
echo other >"$SIM/ucp_password"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 $UP; rc_is 1; err_has "invalid UCP credentials"
rm "$SIM/ucp_password"
status_is 'aaa node1 2.5.3 true\nbbb node2 2.5.3 true\nccc node3 2.5.3 true'
[ ! -e "$SIM/upgrade.log" ] || fail "no upgrade.log after refusals"

# --- 2.5.3 -> 2.6.8 one replica at a time, interrupted, resumed; the migration fails ------
printf '# from a secrets file\nUCP_PASSWORD=secret\n' >"$work/env"
touch "$SIM/fail.upgrade-after-1"
echo 3 >"$SIM/fail.migration"
run docker run --rm -i --env-file "$work/env" $IMG:2.6.8 $UP; rc_is 1
out_is "upgraded replica aaa on node1: 2.5.3 -> 2.6.8"; err_has "interrupted after 1 replicas"
status_is 'aaa node1 2.6.8 true\nbbb node2 2.5.3 true\nccc node3 2.5.3 true'
run docker ps; out_is "2.6.8 aaa node1"
run grep -x target=2.6.8 "$SIM/upgrade.progress"; rc_is 0
rm "$SIM/fail.upgrade-after-1"
run docker run --rm -i --env-file "$work/env" $IMG:2.6.8 $UP; rc_is 0
out_is "$(lines "replica aaa already at 2.6.8; skipping" \
    "upgraded replica bbb on node2: 2.5.3 -> 2.6.8" \
    "upgraded replica ccc on node3: 2.5.3 -> 2.6.8" \
    "DTR upgraded to 2.6.8")"
err_has "metadatastoremigration job failed 3 times"
status_is 'aaa node1 2.6.8 true\nbbb node2 2.6.8 true\nccc node3 2.6.8 true'
run cat "$SIM/upgrade.log"
out_is "$(lines "aaa node1 2.5.3 -> 2.6.8" "bbb node2 2.5.3 -> 2.6.8" "ccc node3 2.5.3 -> 2.6.8")"
[ ! -e "$SIM/upgrade.progress" ] || fail "upgrade.progress removed after success"
JOBS="jobs --job metadatastoremigration"
run docker run --rm $IMG:2.6.8 $JOBS; rc_is 0
out_is "$(lines "metadatastoremigration attempt=1 status=failed" \
    "metadatastoremigration attempt=2 status=failed" \
    "metadatastoremigration attempt=3 status=failed" \
    "metadatastoremigration status=failed")"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 $UP; rc_is 0; out_is "DTR is already at 2.6.8; nothing to upgrade"

# --- retrigger the migration through the API ----------------------------------------------
echo tok123 >"$SIM/access_token"
BODY='{"action": "metadatastoremigration"}'
run curl -sS -X POST -u admin:wrong -H 'Content-Type: application/json' -d "$BODY" \
    https://dtr.example/api/v0/jobs
rc_is 22; err_has "returned error: 401"
run curl -sS -X POST -H 'Content-Type: application/json' -d "$BODY" https://dtr.example/api/v0/jobs
rc_is 22; err_has "returned error: 401"
run curl -sS -X POST -u admin:tok123 -d '{"action": "gc"}' https://dtr.example/api/v0/jobs
rc_is 22; err_has "returned error: 400"
run docker run --rm $IMG:2.6.8 $JOBS; out_has "metadatastoremigration status=failed"
printf '# capstan writes this file 0600\nuser = "admin:tok123"\n' >"$work/curlrc"
run curl -sS -K "$work/curlrc" -X POST -H 'Content-Type: application/json' -d "$BODY" \
    https://dtr.example/api/v0/jobs
rc_is 0; out_is '{"action":"metadatastoremigration","status":"done"}'
run docker run --rm $IMG:2.6.8 $JOBS
out_has "metadatastoremigration attempt=4 status=done"; out_has "metadatastoremigration status=done"
echo 5 >"$SIM/fail.migration"
run curl -sS -X POST -u admin:tok123 -H 'Content-Type: application/json' -d "$BODY" \
    https://dtr.example/api/v0/jobs
rc_is 0; out_is '{"action":"metadatastoremigration","status":"failed"}'
run curl -sS --config "$work/curlrc" -X POST -d "$BODY" https://dtr.example/api/v0/jobs
rc_is 0; out_is '{"action":"metadatastoremigration","status":"failed"}'
rm "$SIM/fail.migration"

# --- a crash mid-upgrade (kill -9), resumed; a patch upgrade runs no migration -------------
docker pull $IMG:2.6.9 >/dev/null
touch "$SIM/crash.upgrade-after-2"
# Through `sh -c`, so the calling shell does not report the kill.
run sh -c '"$@"' sh docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $UP; rc_is 137
status_is 'aaa node1 2.6.9 true\nbbb node2 2.6.9 true\nccc node3 2.6.8 true'
rm "$SIM/crash.upgrade-after-2"
jobs_before=$(wc -l <"$SIM/jobs")
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $UP; rc_is 0
out_has "replica bbb already at 2.6.9; skipping"; out_has "upgraded replica ccc on node3: 2.6.8 -> 2.6.9"
[ "$(wc -l <"$SIM/jobs")" = "$jobs_before" ] || fail "no migration job for a patch upgrade"
status_is 'aaa node1 2.6.9 true\nbbb node2 2.6.9 true\nccc node3 2.6.9 true'

# --- a hanging upgrade stays until killed --------------------------------------------------
touch "$SIM/hang.upgrade"
docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $UP >/dev/null 2>&1 &
pid=$!
sleep 1
STEP="hang.upgrade"; RC=0 OUT= ERR=
kill -0 "$pid" 2>/dev/null || fail "still running after 1s"
kill "$pid"
wait "$pid" 2>/dev/null
rm "$SIM/hang.upgrade"

# --- join and remove -----------------------------------------------------------------------
JOIN="join --ucp-node node4 $UCP --existing-replica-id aaa --replica-id ddd"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $JOIN; rc_is 0
out_is "joined replica ddd on node node4 at 2.6.9"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $JOIN; rc_is 0; out_is "replica ddd already joined on node node4"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 join --ucp-node node1 $UCP --existing-replica-id aaa \
    --replica-id eee
rc_is 1; err_has "node node1 already runs DTR replica aaa"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.8 join --ucp-node node5 $UCP --existing-replica-id aaa \
    --replica-id eee
rc_is 1; err_has "image version 2.6.8 does not match the cluster version 2.6.9"
status_is 'aaa node1 2.6.9 true\nbbb node2 2.6.9 true\nccc node3 2.6.9 true\nddd node4 2.6.9 true'
REMOVE="remove $UCP"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $REMOVE --existing-replica-id ddd --replica-id ddd
rc_is 1; err_has "other than the one removed"
docker dtr-sim set-health ccc false
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $REMOVE --existing-replica-id ccc --replica-id ddd
rc_is 1; err_has "existing replica ccc is unhealthy"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $REMOVE --existing-replica-id aaa --replica-id ccc
rc_is 0; out_is "removed replica ccc from node node3"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $REMOVE --existing-replica-id aaa --replica-id ccc
rc_is 1; err_has "replica ccc not found"
run docker run --rm -e UCP_PASSWORD $IMG:2.6.9 $REMOVE --existing-replica-id bbb --replica-id ddd
rc_is 0
status_is 'aaa node1 2.6.9 true\nbbb node2 2.6.9 true'

# --- unsupported usage ---------------------------------------------------------------------
run docker version; rc_is 2
run docker run --rm --privileged $IMG:2.6.9 ping --replica-id aaa; rc_is 125
run curl -sS https://dtr.example/api/v0/repositories; rc_is 22; err_has "returned error: 404"

echo "selftest: all $checks checks passed"
