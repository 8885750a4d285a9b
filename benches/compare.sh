#!/usr/bin/env bash
# benches/compare.sh — side-by-side A/B benchmark of stsedge against nginx.
#
# usage: benches/compare.sh [options]
#   --tenants N            tenants in the fixture                 (default 10000, env TENANTS)
#   --rounds N             alternating A/B rounds per mode        (default 5, env ROUNDS)
#   --duration S           measured seconds per run               (default 10, env DURATION)
#   --warmup S             unmeasured warm-up seconds per run     (default 2, env WARMUP)
#   --concurrency C        concurrency of the rounds              (default 64, env CONCURRENCY)
#   --high-concurrency C   one extra A/B pass per mode at C, for the p99 target;
#                          0 disables                             (default 256, env HIGH_CONCURRENCY)
#   --modes LIST           comma-separated: full,resume,keepalive (default all, env MODES)
#   --only WHICH           both | stsedge | nginx                 (default both, env ONLY)
#   --reload-storm         during an extra stsedge run, rewrite one tenant file every
#                          100 ms (same policy, new comment; temp file + rename) and
#                          SIGHUP; fail unless the loaders saw 0 errors and 0 mismatches
#   --fixture DIR          fixture directory (default target/stsload-fixture-N)
#   --results DIR          results directory (default target/stsload-results/DATE)
#   --loader-args "ARGS"   extra `stsload run` arguments for every measured run, e.g.
#                          "--rate 2000" to compare both servers at the same offered
#                          load (env LOADER_ARGS)
#   --server-cpu-quota F   limit each server to F of a core (0 < F <= 1) with a cgroup
#                          CPU quota (10 ms period), set after start-up: both servers
#                          are then CPU-bound while the loader is not, so req/s ÷ F is
#                          req/s per server core even where one loader core cannot
#                          saturate a whole server core (needs root and a cgroup cpu
#                          controller, v1 or v2; env SERVER_CPU_QUOTA)
#   --no-build             use the binaries already built
#   -h, --help             this text
#
# Layout: servers on CPU 0, the loader on CPU 1 (taskset). Both servers run for the
# whole session (idle one costs nothing) and are measured in alternating rounds
# (stsedge, nginx, stsedge, nginx, …) so drift hits both equally. Also measured:
# start-up time to the first served policy, memory after load (VmRSS and PSS; nginx
# summed over master + workers), and reload time: nginx (`nginx -s reload`, then
# plain SIGHUP) vs stsedge SIGHUP, each timed until the changed policy is served.
#
# Ports: stsedge 127.0.0.1:$HTTPS_PORT (8443), admin $ADMIN_PORT (9090), nginx
# $NGINX_PORT (8444). Every server started here is stopped on exit. Binaries come
# from ${CARGO_TARGET_DIR:-target}/release (env STSEDGE_BIN overrides the server binary).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

TENANTS=${TENANTS:-10000}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
HIGH_CONCURRENCY=${HIGH_CONCURRENCY:-256}
MODES=${MODES:-full,resume,keepalive}
ONLY=${ONLY:-both}
HTTPS_PORT=${HTTPS_PORT:-8443}
ADMIN_PORT=${ADMIN_PORT:-9090}
NGINX_PORT=${NGINX_PORT:-8444}
READY_TIMEOUT=${READY_TIMEOUT:-600}
SETTLE=${SETTLE:-5}
LOADER_ARGS=${LOADER_ARGS:-}
SERVER_CPU_QUOTA=${SERVER_CPU_QUOTA:-}
RELOAD_STORM=0
BUILD=1
FIXTURE=""
RESULTS=""

while [ $# -gt 0 ]; do
    case "$1" in
        --tenants) TENANTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --high-concurrency) HIGH_CONCURRENCY=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --reload-storm) RELOAD_STORM=1; shift ;;
        --fixture) FIXTURE=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --loader-args) LOADER_ARGS=$2; shift 2 ;;
        --server-cpu-quota) SERVER_CPU_QUOTA=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$ONLY" in both|stsedge|nginx) ;; *) echo "compare.sh: --only must be both, stsedge or nginx" >&2; exit 2 ;; esac
if [ "$RELOAD_STORM" = 1 ] && [ "$ONLY" = nginx ]; then
    echo "compare.sh: --reload-storm needs stsedge (not --only nginx)" >&2; exit 2
fi

if [ -n "$SERVER_CPU_QUOTA" ] &&
    ! awk -v f="$SERVER_CPU_QUOTA" 'BEGIN { exit !(f + 0 > 0 && f + 0 <= 1) }'; then
    echo "compare.sh: --server-cpu-quota must be a fraction of a core in (0, 1], e.g. 0.5" >&2; exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOADER=$TARGET_DIR/release/stsload
STSEDGE=${STSEDGE_BIN:-$TARGET_DIR/release/stsedge}
FIXTURE=${FIXTURE:-target/stsload-fixture-$TENANTS}
RESULTS=${RESULTS:-target/stsload-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
JSONL=$RESULTS/results.jsonl
: > "$JSONL"
FAILURES=0

want() { [ "$ONLY" = both ] || [ "$ONLY" = "$1" ]; }
log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- cleanup
STSEDGE_PID=""
NGINX_PID=""
STORM_PID=""
RESTORE_FILES=()   # "backup:original" pairs to put back on exit
QUOTA_DIRS=()      # cgroups made for --server-cpu-quota, removed on exit
cleanup() {
    local rc=$?
    set +e
    [ -n "$STORM_PID" ] && kill "$STORM_PID" 2>/dev/null && wait "$STORM_PID" 2>/dev/null
    for pair in "${RESTORE_FILES[@]}"; do
        [ -f "${pair%%:*}" ] && mv -f "${pair%%:*}" "${pair#*:}"
    done
    [ -n "$STSEDGE_PID" ] && kill -TERM "$STSEDGE_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null
    for pid in $STSEDGE_PID $NGINX_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for dir in "${QUOTA_DIRS[@]}"; do
        for _ in $(seq 50); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    if want stsedge; then
        log "cargo build --release -p stsedge -p stsload"
        cargo build --release -p stsedge -p stsload
    else
        log "cargo build --release -p stsload"
        cargo build --release -p stsload
    fi
fi
[ -x "$LOADER" ] || { echo "compare.sh: $LOADER missing (build first)" >&2; exit 1; }
if want stsedge && [ ! -x "$STSEDGE" ]; then
    echo "compare.sh: $STSEDGE missing (build first, or --only nginx)" >&2; exit 1
fi
if want nginx && ! command -v nginx >/dev/null; then
    echo "compare.sh: nginx not installed (apt-get install -y nginx), or --only stsedge" >&2; exit 1
fi

# ---------------------------------------------------------------- fixture
fixture_matches() {
    [ -f "$FIXTURE/manifest.tsv" ] &&
    [ "$(wc -l < "$FIXTURE/manifest.tsv")" -eq "$TENANTS" ] &&
    grep -q "listen = \[\"127.0.0.1:$HTTPS_PORT\"\]" "$FIXTURE/stsedge.toml" &&
    grep -q "listen = \"127.0.0.1:$ADMIN_PORT\"" "$FIXTURE/stsedge.toml" &&
    grep -q -m1 "listen 127.0.0.1:$NGINX_PORT ssl;" "$FIXTURE/nginx.conf"
}
if fixture_matches; then
    log "reusing fixture $FIXTURE ($TENANTS tenants)"
else
    log "generating fixture $FIXTURE ($TENANTS tenants)"
    "$LOADER" fixture --tenants "$TENANTS" --out "$FIXTURE" --http-port "$HTTPS_PORT" \
        --admin-port "$ADMIN_PORT" --nginx-port "$NGINX_PORT" --force
fi
FIXTURE=$(cd "$FIXTURE" && pwd)
PROBE_DOMAIN=t000001.bench.example
PROBE_HOST=mta-sts.$PROBE_DOMAIN

{
    echo "date: $(date -Is)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "kernel: $(uname -r); cpus: $(nproc)"
    command -v nginx >/dev/null && nginx -v 2>&1
    echo "tenants=$TENANTS rounds=$ROUNDS duration=$DURATION warmup=$WARMUP concurrency=$CONCURRENCY high=$HIGH_CONCURRENCY modes=$MODES only=$ONLY loader_args=$LOADER_ARGS server_cpu_quota=${SERVER_CPU_QUOTA:-none}"
} > "$RESULTS/env.txt"

# ---------------------------------------------------------------- helpers
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fetch PORT -> policy body on stdout (curl checks the chain against the fixture CA)
fetch() {
    curl -sf --max-time 2 --cacert "$FIXTURE/ca.pem" \
        --resolve "$PROBE_HOST:$1:127.0.0.1" "https://$PROBE_HOST:$1/.well-known/mta-sts.txt"
}

# wait_ready NAME PID PORT LOG: poll the policy URL until it answers, with a deadline
wait_ready() {
    local name=$1 pid=$2 port=$3 logf=$4 start
    start=$(now)
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before serving; last lines of $logf:"
            tail -n 20 "$logf" >&2 || true
            return 1
        fi
        fetch "$port" >/dev/null 2>&1 && return 0
        if awk -v a="$start" -v b="$(now)" -v t="$READY_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            log "$name not serving on port $port after ${READY_TIMEOUT}s"
            return 1
        fi
        sleep 0.05
    done
}

# wait_body PORT PATTERN TIMEOUT: poll until the served body contains PATTERN on 5
# consecutive fetches (right after an nginx reload, old and new workers both answer
# for a while, so one matching answer proves nothing)
wait_body() {
    local start streak=0
    start=$(now)
    while :; do
        if fetch "$1" 2>/dev/null | grep -q -- "$2"; then
            streak=$((streak + 1))
            [ "$streak" -ge 5 ] && return 0
            continue
        fi
        streak=0
        if awk -v a="$start" -v b="$(now)" -v t="$3" 'BEGIN { exit !(b - a > t) }'; then return 1; fi
        sleep 0.02
    done
}

# wait_gone TIMEOUT PID...: until none of the PIDs exists
wait_gone() {
    local start p alive
    start=$(now)
    local t=$1
    shift
    while :; do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        if awk -v a="$start" -v b="$(now)" -v t="$t" 'BEGIN { exit !(b - a > t) }'; then return 1; fi
        sleep 0.02
    done
}

children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -s ' \n' ' '; }

# mem PID... -> "rss_kib pss_kib" summed
mem() {
    local rss=0 pss=0 p v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0); rss=$((rss + ${v:-0}))
        v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); pss=$((pss + ${v:-0}))
    done
    echo "$rss $pss"
}

# smoke NAME PORT: a short verified run so a misconfigured server fails early
smoke() {
    if ! taskset -c 1 "$LOADER" run --target "127.0.0.1:$2" --fixture "$FIXTURE" --mode full \
        --concurrency 4 --duration 5 --max-requests 200 --brief; then
        log "$1 fails the smoke test (see above)"
        return 1
    fi
}

start_nginx() {
    port_busy "$NGINX_PORT" && { log "port $NGINX_PORT already in use"; return 1; }
    local t0
    t0=$(now)
    taskset -c 0 nginx -p "$FIXTURE" -c "$FIXTURE/nginx.conf" -e "$FIXTURE/logs/error.log" \
        > "$FIXTURE/logs/nginx.out" 2>&1 &
    NGINX_PID=$!    # taskset execs nginx: this is the master (daemon off)
    wait_ready nginx "$NGINX_PID" "$NGINX_PORT" "$FIXTURE/logs/error.log"
    NGINX_STARTUP=$(since "$t0")
    log "nginx master $NGINX_PID (workers $(children "$NGINX_PID")) serving after ${NGINX_STARTUP}s"
    smoke nginx "$NGINX_PORT"
}

start_stsedge() {
    port_busy "$HTTPS_PORT" && { log "port $HTTPS_PORT already in use"; return 1; }
    local t0
    t0=$(now)
    taskset -c 0 "$STSEDGE" serve --config "$FIXTURE/stsedge.toml" > "$FIXTURE/logs/stsedge.log" 2>&1 &
    STSEDGE_PID=$!
    if ! wait_ready stsedge "$STSEDGE_PID" "$HTTPS_PORT" "$FIXTURE/logs/stsedge.log"; then
        log "stsedge did not come up (on a branch without the real server this is expected; use --only nginx)"
        return 1
    fi
    STSEDGE_STARTUP=$(since "$t0")
    log "stsedge $STSEDGE_PID serving after ${STSEDGE_STARTUP}s"
    if curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null; then
        log "stsedge /healthz ok on admin port $ADMIN_PORT"
    else
        log "warning: stsedge /healthz on 127.0.0.1:$ADMIN_PORT did not answer 2xx"
    fi
    smoke stsedge "$HTTPS_PORT"
}

# limit_cpu NAME PID...: move the processes into a new cgroup holding
# $SERVER_CPU_QUOTA of a core (cgroup v2 cpu.max, else v1 cfs quota)
limit_cpu() {
    local name=$1 dir period=10000 quota p
    shift
    quota=$(awk -v f="$SERVER_CPU_QUOTA" -v p="$period" 'BEGIN { printf "%d", f * p }')
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
        dir=/sys/fs/cgroup/stsload-$$-$name
        echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        mkdir "$dir" && echo "$quota $period" > "$dir/cpu.max"
    elif [ -d /sys/fs/cgroup/cpu ]; then
        dir=/sys/fs/cgroup/cpu/stsload-$$-$name
        mkdir "$dir" && echo "$period" > "$dir/cpu.cfs_period_us" && echo "$quota" > "$dir/cpu.cfs_quota_us"
    else
        log "--server-cpu-quota: no cgroup cpu controller here"; return 1
    fi || { log "--server-cpu-quota: cannot set up $dir (needs root)"; return 1; }
    QUOTA_DIRS+=("$dir")
    for p in "$@"; do echo "$p" > "$dir/cgroup.procs"; done
    log "$name ($*) limited to $SERVER_CPU_QUOTA of a core ($dir)"
}

# run_load ROUND SERVER MODE CONCURRENCY: one measured run, appended to results.jsonl
# (tagged $LABEL instead of the mode if set); a failing run is recorded and counted,
# not fatal.
run_load() {
    local round=$1 server=$2 mode=$3 conc=$4 port pid out rc=0 report label=${LABEL:-$3}
    if [ "$server" = stsedge ]; then port=$HTTPS_PORT pid=$STSEDGE_PID; else port=$NGINX_PORT pid=$NGINX_PID; fi
    out=$RESULTS/r$round-$label-c$conc-$server.json
    printf '  %-7s ' "$server" >&2
    # shellcheck disable=SC2086 # $LOADER_ARGS is a word list on purpose
    taskset -c 1 "$LOADER" run --target "127.0.0.1:$port" --fixture "$FIXTURE" --mode "$mode" \
        --concurrency "$conc" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$pid" \
        --brief --json-out "$out" $LOADER_ARGS >&2 || rc=$?
    report=null
    [ -s "$out" ] && report=$(cat "$out")
    printf '{"round":%d,"server":"%s","mode":"%s","concurrency":%d,"rc":%d,"report":%s}\n' \
        "$round" "$server" "$label" "$conc" "$rc" "$report" >> "$JSONL"
    if [ "$rc" != 0 ]; then FAILURES=$((FAILURES + 1)); fi
    return 0
}

SERVERS=()
want stsedge && SERVERS+=(stsedge)
want nginx && SERVERS+=(nginx)
IFS=, read -r -a MODE_LIST <<< "$MODES"

# ---------------------------------------------------------------- start
NGINX_STARTUP="-" STSEDGE_STARTUP="-"
want stsedge && start_stsedge
want nginx && start_nginx
if [ -n "$SERVER_CPU_QUOTA" ]; then
    want stsedge && limit_cpu stsedge "$STSEDGE_PID"
    # shellcheck disable=SC2046 # word splitting of the pid list is intended
    want nginx && limit_cpu nginx "$NGINX_PID" $(children "$NGINX_PID")
fi

# ---------------------------------------------------------------- rounds
# One unmeasured run per server first: a freshly forked nginx worker (and a fresh
# stsedge) is measurably slower for its first seconds (page faults, cold caches).
for server in "${SERVERS[@]}"; do
    if [ "$server" = stsedge ]; then port=$HTTPS_PORT; else port=$NGINX_PORT; fi
    log "settling $server (unmeasured ${SETTLE}s)"
    taskset -c 1 "$LOADER" run --target "127.0.0.1:$port" --fixture "$FIXTURE" --mode full \
        --concurrency "$CONCURRENCY" --duration "$SETTLE" --brief --allow-errors >/dev/null || true
done
for round in $(seq "$ROUNDS"); do
    for mode in "${MODE_LIST[@]}"; do
        log "round $round/$ROUNDS, $mode, concurrency $CONCURRENCY"
        for server in "${SERVERS[@]}"; do run_load "$round" "$server" "$mode" "$CONCURRENCY"; done
    done
done
if [ "$HIGH_CONCURRENCY" -gt 0 ] && [ "$HIGH_CONCURRENCY" != "$CONCURRENCY" ]; then
    for mode in "${MODE_LIST[@]}"; do
        log "p99 pass, $mode, concurrency $HIGH_CONCURRENCY"
        for server in "${SERVERS[@]}"; do run_load 1 "$server" "$mode" "$HIGH_CONCURRENCY"; done
    done
fi

# ---------------------------------------------------------------- memory after load
MEM_STSEDGE="-" MEM_NGINX="-"
want stsedge && MEM_STSEDGE=$(mem "$STSEDGE_PID")
# shellcheck disable=SC2046 # word splitting of the pid list is intended
want nginx && MEM_NGINX=$(mem "$NGINX_PID" $(children "$NGINX_PID"))

# ---------------------------------------------------------------- reload storm
if [ "$RELOAD_STORM" = 1 ]; then
    TF=$FIXTURE/tenants/$PROBE_DOMAIN.toml
    cp -p "$TF" "$RESULTS/storm-original.toml"
    RESTORE_FILES+=("$RESULTS/storm-original.toml:$TF")
    # A second, small loader hammers the rewritten tenant itself; the main one covers the rest.
    STORM_FIX=$RESULTS/storm-fixture
    mkdir -p "$STORM_FIX"
    grep "^$PROBE_DOMAIN	" "$FIXTURE/manifest.tsv" > "$STORM_FIX/manifest.tsv"
    log "reload storm: rewriting $TF every 100 ms + SIGHUP during a ${DURATION}s full run"
    (
        i=0
        while kill -0 "$STSEDGE_PID" 2>/dev/null; do
            i=$((i + 1))
            { echo "# reload storm $i"; cat "$RESULTS/storm-original.toml"; } > "$FIXTURE/tenants/.storm.tmp"
            mv -f "$FIXTURE/tenants/.storm.tmp" "$TF"
            kill -HUP "$STSEDGE_PID" 2>/dev/null || break
            sleep 0.1
        done
    ) &
    STORM_PID=$!
    taskset -c 1 "$LOADER" run --target "127.0.0.1:$HTTPS_PORT" --fixture "$STORM_FIX" --mode full \
        --concurrency 4 --duration "$DURATION" --brief --json-out "$RESULTS/storm-focused.json" \
        > "$RESULTS/storm-focused.txt" 2>&1 &
    FOCUSED_PID=$!
    storm_rc=0
    LABEL=storm run_load 1 stsedge full "$CONCURRENCY"
    tail -n 1 "$JSONL" | grep -q '"rc":0' || storm_rc=1
    wait "$FOCUSED_PID" || storm_rc=1
    kill "$STORM_PID" 2>/dev/null || true
    wait "$STORM_PID" 2>/dev/null || true
    STORM_PID=""
    cp -p "$RESULTS/storm-original.toml" "$TF"
    kill -HUP "$STSEDGE_PID" 2>/dev/null || storm_rc=1
    kill -0 "$STSEDGE_PID" 2>/dev/null || { log "stsedge died during the storm"; storm_rc=1; }
    log "reload storm, focused loader: $(cat "$RESULTS/storm-focused.txt")"
    if [ "$storm_rc" = 0 ]; then
        log "reload storm: PASS (0 errors, 0 mismatches)"
    else
        log "reload storm: FAIL"
        FAILURES=$((FAILURES + 1))
    fi
fi

# ---------------------------------------------------------------- reload time
# Change t000001's max_age (604800 -> 604801), signal, and time until the new body
# is served; then revert the same way. Files are restored on exit if interrupted.
RELOAD_NGINX_S="-" RELOAD_NGINX_HUP="-" RELOAD_NGINX_DRAIN="-" RELOAD_STSEDGE="-" RELOAD_STSEDGE_REVERT="-"
if want nginx; then
    cp -p "$FIXTURE/nginx.conf" "$RESULTS/nginx.conf.orig"
    RESTORE_FILES+=("$RESULTS/nginx.conf.orig:$FIXTURE/nginx.conf")
    perl -pi -e 's/(mx\.t000001\.bench\.example\\r\\nmax_age: )604800/${1}604801/' "$FIXTURE/nginx.conf"
    # shellcheck disable=SC2207 # pid list
    old_workers=($(children "$NGINX_PID"))
    t0=$(now)
    # `nginx -s reload` parses the whole config (loading every certificate) before it
    # even sends the signal; that is part of what an operator waits for.
    nginx -p "$FIXTURE" -c "$FIXTURE/nginx.conf" -e "$FIXTURE/logs/error.log" -s reload
    if wait_body "$NGINX_PORT" "max_age: 604801" "$READY_TIMEOUT"; then RELOAD_NGINX_S=$(since "$t0"); fi
    if wait_gone "$READY_TIMEOUT" "${old_workers[@]}"; then RELOAD_NGINX_DRAIN=$(since "$t0"); fi
    cp -p "$RESULTS/nginx.conf.orig" "$FIXTURE/nginx.conf"
    # shellcheck disable=SC2207
    old_workers=($(children "$NGINX_PID"))
    t0=$(now)
    kill -HUP "$NGINX_PID"
    if wait_body "$NGINX_PORT" "max_age: 604800" "$READY_TIMEOUT"; then RELOAD_NGINX_HUP=$(since "$t0"); fi
    wait_gone "$READY_TIMEOUT" "${old_workers[@]}" || true
    log "nginx reload: 'nginx -s reload' ${RELOAD_NGINX_S}s (old workers gone ${RELOAD_NGINX_DRAIN}s), SIGHUP ${RELOAD_NGINX_HUP}s"
fi
if want stsedge; then
    TF=$FIXTURE/tenants/$PROBE_DOMAIN.toml
    cp -p "$TF" "$RESULTS/tenant.orig"
    RESTORE_FILES+=("$RESULTS/tenant.orig:$TF")
    sed 's/^max_age = 604800$/max_age = 604801/' "$RESULTS/tenant.orig" > "$FIXTURE/tenants/.reload.tmp"
    t0=$(now)
    mv -f "$FIXTURE/tenants/.reload.tmp" "$TF"
    kill -HUP "$STSEDGE_PID"
    if wait_body "$HTTPS_PORT" "max_age: 604801" 60; then RELOAD_STSEDGE=$(since "$t0"); fi
    cp -p "$RESULTS/tenant.orig" "$FIXTURE/tenants/.reload.tmp"
    t0=$(now)
    mv -f "$FIXTURE/tenants/.reload.tmp" "$TF"
    kill -HUP "$STSEDGE_PID"
    if wait_body "$HTTPS_PORT" "max_age: 604800" 60; then RELOAD_STSEDGE_REVERT=$(since "$t0"); fi
    log "stsedge reload: SIGHUP ${RELOAD_STSEDGE}s, revert ${RELOAD_STSEDGE_REVERT}s (to changed policy served)"
fi

# ---------------------------------------------------------------- report
{
    echo
    echo "== stsedge vs nginx: $TENANTS tenants, $ROUNDS rounds x ${DURATION}s (+${WARMUP}s warm-up), servers on CPU 0, loader on CPU 1"
    if [ -n "$SERVER_CPU_QUOTA" ]; then
        echo "servers limited to $SERVER_CPU_QUOTA of a core each (cgroup CPU quota, 10 ms period) after start-up:"
        echo "req/s per server core = req/s / $SERVER_CPU_QUOTA; reload times below are under the same quota"
    fi
    "$LOADER" summarize "$JSONL"
    echo
    printf '%-34s %14s %14s\n' "" stsedge nginx
    printf '%-34s %14s %14s\n' "start-up to first policy (s)" "$STSEDGE_STARTUP" "$NGINX_STARTUP"
    printf '%-34s %14s %14s\n' "VmRSS after load (KiB, summed)" "${MEM_STSEDGE% *}" "${MEM_NGINX% *}"
    printf '%-34s %14s %14s\n' "PSS after load (KiB, summed)" "${MEM_STSEDGE#* }" "${MEM_NGINX#* }"
    printf '%-34s %14s %14s\n' "reload to changed policy (s)" "$RELOAD_STSEDGE" "$RELOAD_NGINX_S (-s reload)"
    printf '%-34s %14s %14s\n' "reload back (s)" "$RELOAD_STSEDGE_REVERT" "$RELOAD_NGINX_HUP (SIGHUP)"
    printf '%-34s %14s %14s\n' "old nginx workers gone (s)" "" "$RELOAD_NGINX_DRAIN"
    echo "(reload times: from the change until 5 consecutive fetches return the new policy)"
    echo
    echo "raw results: $RESULTS"
} | tee "$RESULTS/summary.txt"

if [ "$FAILURES" -gt 0 ]; then
    log "$FAILURES run(s) had errors or mismatches (see 'runs with failures' above)"
    exit 1
fi
