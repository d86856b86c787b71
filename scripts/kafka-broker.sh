#!/usr/bin/env bash
# Starts or stops a local tansu broker (in-memory storage) for development:
#   scripts/kafka-broker.sh start [PORT]   (default 9092; pid in ${TMPDIR:-/tmp}/flowwarden-tansu.pid)
#   scripts/kafka-broker.sh stop
# Tests do not use this script: they start their own broker on a free port.
set -euo pipefail
pidfile="${TMPDIR:-/tmp}/flowwarden-tansu.pid"
tansu_bin="$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")"
case "${1:-}" in
start)
    port="${2:-9092}"
    if [ ! -x "$tansu_bin" ]; then
        echo "tansu is not installed: run scripts/install-tansu.sh" >&2
        exit 1
    fi
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "broker already running (pid $(cat "$pidfile"))"
        exit 0
    fi
    "$tansu_bin" broker --storage-engine memory://tansu/ \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        >"${TMPDIR:-/tmp}/flowwarden-tansu.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "broker listening on 127.0.0.1:$port (pid $(cat "$pidfile"))"
            exit 0
        fi
        sleep 0.1
    done
    echo "broker did not start; see ${TMPDIR:-/tmp}/flowwarden-tansu.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
        echo "broker stopped"
    fi
    ;;
*)
    echo "usage: $0 start [PORT] | stop" >&2
    exit 2
    ;;
esac
