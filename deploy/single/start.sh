#!/usr/bin/env bash
# WAHA and waha-sync in one container (Hugging Face Spaces, Render): the image's entrypoint.
#
#   start.sh WAHA-COMMAND [ARG...]      (Dockerfile: ENTRYPOINT tini -- start.sh; CMD WAHA's own)
#
# 1. `waha-sync restore`. If it fails, exit with its status and never start WAHA: WAHA on an
#    empty directory would ask every phone for a new QR code, while a failed container is
#    restarted by the platform and the restore retried.
# 2. `waha-sync sidecar` in the background; WAHA starts once the sidecar's /health answers 200
#    (its first comparison is done and it watches the tree), or after
#    WAHA_SYNC_START_READY_SECONDS (60) with a warning: anything written before it watches is
#    still found by that comparison.
# 3. WAHA's command in the background, without the database URLs and without the names WAHA
#    shares with waha-sync in its environment: WAHA >= 2026.6 would switch its own PostgreSQL
#    session storage on for WHATSAPP_SESSIONS_POSTGRESQL_URL, and its own PostgreSQL media
#    storage for WAHA_MEDIA_STORAGE / WAHA_MEDIA_POSTGRESQL_URL; here they are waha-sync's.
#
# Media: when waha-sync syncs media (WAHA_SYNC_MEDIA_STORAGE, or WAHA_MEDIA_STORAGE, is
# postgresql in any case; the WAHA_SYNC_ name wins), WAHA must write received media into the
# synced folder and keep it: this script sets WHATSAPP_FILES_FOLDER to WAHA_SYNC_MEDIA_DIR
# (/app/.media) and WHATSAPP_FILES_LIFETIME=0 for WAHA and waha-sync alike (WAHA's defaults,
# /tmp/whatsapp-files and 180 s, would leave media unsynced and delete restored media).
#
# Why this script stays and does not `exec` WAHA: a platform stops a container by sending
# SIGTERM to its main process only. Were WAHA that process, the sidecar would never hear of the
# stop and would be SIGKILLed with the last changes unshipped. So this script supervises both:
# on SIGTERM or SIGINT it stops WAHA first (the sidecar still ships what WAHA writes while it
# shuts down), waiting up to WAHA_SYNC_START_STOP_SECONDS (15), then sends SIGTERM to the
# sidecar, whose final flush ships everything pending (WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS, 20),
# and exits with WAHA's status (a clean stop by the signal counts as 0), or the sidecar's if
# WAHA's was 0. Keep the platform's grace period above the two budgets together.
# If either one exits by itself, the other is stopped the same way and the container exits
# non-zero, so the platform restarts both: WAHA without the sidecar would lose changes, and a
# sidecar that stopped because another container claimed the instance must take WAHA with it.
set -u

log() { printf '[START] %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
  log "usage: start.sh WAHA-COMMAND [ARG...]"
  exit 2
fi

ready_seconds=${WAHA_SYNC_START_READY_SECONDS:-60}
waha_stop_seconds=${WAHA_SYNC_START_STOP_SECONDS:-15}
flush_seconds=${WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS:-20}
flush_seconds=$(( ${flush_seconds%%.*} + 5 )) # the sidecar's own limit, then a margin
port=${WAHA_SYNC_PORT:-3001}

media_storage=${WAHA_SYNC_MEDIA_STORAGE:-${WAHA_MEDIA_STORAGE:-local}}
if [ "${media_storage,,}" = postgresql ]; then
  media_dir=${WAHA_SYNC_MEDIA_DIR:-/app/.media}
  if [ -n "${WHATSAPP_FILES_FOLDER:-}" ] && [ "$WHATSAPP_FILES_FOLDER" != "$media_dir" ]; then
    log "media syncs: WHATSAPP_FILES_FOLDER set to $media_dir (was $WHATSAPP_FILES_FOLDER)"
  fi
  if [ -n "${WHATSAPP_FILES_LIFETIME:-}" ] && [ "$WHATSAPP_FILES_LIFETIME" != 0 ]; then
    log "media syncs: WHATSAPP_FILES_LIFETIME set to 0 (was $WHATSAPP_FILES_LIFETIME)"
  fi
  export WHATSAPP_FILES_FOLDER=$media_dir WHATSAPP_FILES_LIFETIME=0
fi

stopping=""
trap 'stopping=TERM' TERM
trap 'stopping=INT' INT

# alive PID: true while PID runs (a child that exited but is not reaped yet counts as gone).
alive() {
  local state
  state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# finish PID: wait for an exited (or exiting) child and set rc to its status.
finish() {
  while alive "$1"; do sleep 0.1; done
  wait "$1"
  rc=$?
}

# stop PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS; sets rc to its exit status.
stop() {
  local pid=$1 name=$2 limit=$3 ticks=0
  kill -TERM "$pid" 2>/dev/null
  while alive "$pid"; do
    if [ "$ticks" -ge $((limit * 10)) ]; then
      log "$name did not stop within ${limit}s; killing it"
      kill -KILL "$pid" 2>/dev/null
      break
    fi
    sleep 0.1
    ticks=$((ticks + 1))
  done
  finish "$pid"
}

# healthy: one GET /health on the sidecar over bash's /dev/tcp (the image needs no curl).
healthy() (
  exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
  printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  IFS= read -r -t 2 status_line <&3 || exit 1
  [[ $status_line == HTTP/*" 200"* ]]
)

# 1. restore (in the background only so that a stop signal can interrupt the wait)
waha-sync restore &
restore=$!
forwarded=""
while alive "$restore"; do
  if [ -n "$stopping" ] && [ -z "$forwarded" ]; then
    kill -TERM "$restore" 2>/dev/null
    forwarded=1
  fi
  sleep 0.1
done
finish "$restore"
if [ -n "$stopping" ]; then
  log "stopped by SIG$stopping during restore"
  exit 143
fi
if [ "$rc" -ne 0 ]; then
  log "restore failed (exit $rc); WAHA is not started, so that a restart retries the restore"
  exit "$rc"
fi

# 2. sidecar
waha-sync sidecar &
sidecar=$!
deadline=$((SECONDS + ready_seconds))
until healthy 2>/dev/null; do
  if [ -n "$stopping" ]; then
    stop "$sidecar" sidecar "$flush_seconds"
    log "stopped by SIG$stopping before WAHA started (sidecar exit $rc)"
    exit "$rc"
  fi
  if ! alive "$sidecar"; then
    finish "$sidecar"
    log "sidecar exited ($rc) before it was ready; WAHA is not started"
    exit $((rc == 0 ? 1 : rc))
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "sidecar not ready after ${ready_seconds}s; starting WAHA anyway"
    break
  fi
  sleep 0.2
done

# 3. WAHA
for name in WHATSAPP_SESSIONS_POSTGRESQL_URL WAHA_MEDIA_STORAGE WAHA_MEDIA_POSTGRESQL_URL; do
  if [ -n "${!name+set}" ]; then
    log "$name is waha-sync's setting here; not passed to WAHA"
  fi
done
env -u WAHA_SYNC_DATABASE_URL -u WAHA_SYNC_MEDIA_DATABASE_URL -u DATABASE_URL \
  -u WHATSAPP_SESSIONS_POSTGRESQL_URL -u WAHA_MEDIA_STORAGE -u WAHA_MEDIA_POSTGRESQL_URL "$@" &
waha=$!
log "WAHA started (pid $waha), sidecar pid $sidecar"

while [ -z "$stopping" ] && alive "$waha" && alive "$sidecar"; do
  sleep 0.5
done

if [ -n "$stopping" ]; then
  log "SIG$stopping: stopping WAHA, then the sidecar (final flush)"
  stop "$waha" WAHA "$waha_stop_seconds"
  waha_rc=$rc
  stop "$sidecar" sidecar "$flush_seconds"
  sidecar_rc=$rc
  log "WAHA exited $waha_rc, sidecar exited $sidecar_rc"
  # 143 is WAHA ending on the SIGTERM it was sent: the stop that was asked for.
  if [ "$waha_rc" -ne 0 ] && [ "$waha_rc" -ne 143 ]; then
    exit "$waha_rc"
  fi
  exit "$sidecar_rc"
fi

if ! alive "$waha"; then
  finish "$waha"
  waha_rc=$rc
  log "WAHA exited $waha_rc by itself; stopping the sidecar (final flush)"
  stop "$sidecar" sidecar "$flush_seconds"
  log "sidecar exited $rc"
  exit $((waha_rc == 0 ? rc : waha_rc))
fi

finish "$sidecar"
sidecar_rc=$rc
log "sidecar exited $sidecar_rc by itself; stopping WAHA so the platform restarts both"
stop "$waha" WAHA "$waha_stop_seconds"
exit $((sidecar_rc == 0 ? 1 : sidecar_rc))
