#!/usr/bin/env bash
# A Garage cluster of NODES nodes (default 3, replication factor 3) on loopback, for the
# tests, the benchmarks and for trying nanofs on an object store (README: "On an object
# store"). Garage is built once into ~/.cache (scripts/garage.sh).
#
#   scripts/garage-cluster.sh start DIR [NODES]   start it; writes DIR/endpoint, DIR/credentials
#   scripts/garage-cluster.sh stop-node DIR N     stop node N (1-based), keeping its data
#   scripts/garage-cluster.sh start-node DIR N    start node N again
#   scripts/garage-cluster.sh stop DIR            stop every node
#
# DIR/credentials holds the bucket's key in the lines nanofs init --s3-credentials reads;
# the bucket is called "nanofs" and the region "garage".
set -euo pipefail
cmd=${1:?start|stop|stop-node|start-node}
dir=${2:?cluster directory}
GARAGE=${GARAGE:-$(dirname "$0")/garage.sh}

node_conf() { echo "$dir/n$1/garage.toml"; }

start_node() {
    local i=$1
    # Started in its own session, so that a test's process group signals leave it alone
    # and `stop` finds it by its pid file.
    setsid "$("$GARAGE" path)" -c "$(node_conf "$i")" server >"$dir/n$i/log" 2>&1 < /dev/null &
    echo $! > "$dir/n$i/pid"
}

stop_node() {
    local pidfile="$dir/n$1/pid"
    [ -f "$pidfile" ] || return 0
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

g() { "$("$GARAGE" path)" -c "$(node_conf 1)" "$@"; }

case "$cmd" in
start)
    nodes=${3:-3}
    mkdir -p "$dir"
    secret=$(openssl rand -hex 32)
    read -r -a ports <<< "$(free_ports $((nodes * 3)))"
    for i in $(seq "$nodes"); do
        rpc=${ports[$(( (i - 1) * 3 ))]}; s3=${ports[$(( (i - 1) * 3 + 1 ))]}; admin=${ports[$(( (i - 1) * 3 + 2 ))]}
        mkdir -p "$dir/n$i/meta" "$dir/n$i/data"
        cat > "$(node_conf "$i")" <<CONF
metadata_dir = "$dir/n$i/meta"
data_dir = "$dir/n$i/data"
db_engine = "lmdb"
replication_factor = $(( nodes < 3 ? nodes : 3 ))
metadata_fsync = true
data_fsync = true
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
CONF
        chmod 600 "$(node_conf "$i")"
        echo "http://127.0.0.1:$s3" > "$dir/n$i/endpoint"
        start_node "$i"
    done
    for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
    ids=()
    for i in $(seq "$nodes"); do
        for _ in $(seq 100); do
            id=$("$("$GARAGE" path)" -c "$(node_conf "$i")" node id -q 2>/dev/null) && break
            sleep 0.2
        done
        ids+=("$id")
        [ "$i" = 1 ] || g node connect "$id" >/dev/null
    done
    for id in "${ids[@]}"; do g layout assign -z dc1 -c 10G "${id%@*}" >/dev/null; done
    g layout apply --version 1 >/dev/null
    g bucket create nanofs >/dev/null
    key=$(g key create nanofs-key)
    g bucket allow --read --write --owner nanofs --key nanofs-key >/dev/null
    key_id=$(echo "$key" | awk -F': *' '/Key ID/ {print $2; exit}')
    secret_key=$(echo "$key" | awk -F': *' '/Secret key/ {print $2; exit}')
    [ -n "$key_id" ] && [ -n "$secret_key" ] || { echo "cannot read the key from: $key" >&2; exit 1; }
    printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' "$key_id" "$secret_key" > "$dir/credentials"
    chmod 600 "$dir/credentials"
    cp "$dir/n1/endpoint" "$dir/endpoint"
    echo "Garage cluster of $nodes nodes at $(cat "$dir/endpoint"), bucket nanofs, region garage, key in $dir/credentials"
    ;;
stop-node) stop_node "${3:?node}" ;;
start-node) start_node "${3:?node}" ;;
stop)
    for n in "$dir"/n*/; do stop_node "$(basename "$n" | tr -d n)"; done
    ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
