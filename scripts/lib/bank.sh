# Shared by the scripts that check the bank from outside (check-docs,
# check-console, check-client); source it, do not run it.
#
#   ensure_chromium, ensure_node   install Debian's chromium / nodejs and npm
#                                  with apt-get when missing
#   start_bank                     builds the bank (its path comes from cargo
#                                  itself, so CARGO_TARGET_DIR and any other
#                                  build setting are respected), starts it on
#                                  a free port over the memory store with its
#                                  log in $work/bank.log, and waits for
#                                  GET /health; sets $bank (the pid) and $port
#   stop_bank                      stops it if it runs
#
# The caller makes $work (a temporary directory) before start_bank.

ensure_apt() {
    local command=$1
    shift
    if ! command -v "$command" >/dev/null; then
        echo "installing Debian's $*"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

ensure_chromium() { ensure_apt chromium chromium; }

ensure_node() {
    ensure_apt node nodejs npm
    ensure_apt npm nodejs npm
}

bank=
port=

start_bank() {
    local binary healthy=0
    binary=$(cargo build -q -p bank --bin bank --message-format=json |
        python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "bank" \
            and message.get("executable"):
        print(message["executable"])')
    if [ ! -x "$binary" ]; then
        echo "FAIL: cargo built no bank binary" >&2
        exit 1
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$binary" --addr "127.0.0.1:$port" --database-url memory \
        >"$work/bank.log" 2>&1 &
    bank=$!
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
            healthy=1
            break
        fi
        if ! kill -0 "$bank" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    if [ "$healthy" != 1 ]; then
        echo "FAIL: the bank ($binary) did not answer GET /health on port $port within 30 s; its log:" >&2
        cat "$work/bank.log" >&2
        exit 1
    fi
}

stop_bank() {
    if [ -n "$bank" ]; then
        kill "$bank" 2>/dev/null || true
        wait "$bank" 2>/dev/null || true
        bank=
    fi
}
