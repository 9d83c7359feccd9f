# tests/jetstream/cluster.sh — a three-node nats-server cluster with
# JetStream on loopback, for tests/jetstream/run.sh and tools/bench-jetstream.
# Source it, with JSW set to a private temporary directory:
#
#   js_cluster_start     pick free ports, start nodes 0..2, wait for a
#                        JetStream meta leader; sets JS_URLS
#   js_node_stop I       kill -9 node I;  js_node_start I  starts it again
#   js_cluster_stop      stop every node (the caller's EXIT trap calls it)
#   js_server_pids       the live nodes' PIDs, one a line
#
# Nodes keep their store in $JSW/nN/store and log to $JSW/nN/log.
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
JS_PID=()
JS_PORT=()
JS_CPORT=()

# N free loopback TCP ports (bound and released by the kernel's choice)
js_free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

js_node_start() {	# js_node_start I
	local i=$1 routes="" k
	for k in 0 1 2; do
		[ "$k" = "$i" ] && continue
		routes="${routes:+$routes,}nats://127.0.0.1:${JS_CPORT[$k]}"
	done
	mkdir -p "$JSW/n$i/store"
	"$NATS_SERVER" -a 127.0.0.1 -p "${JS_PORT[$i]}" -n "n$i" -js -sd "$JSW/n$i/store" \
		--cluster_name dkpjs --cluster "nats://127.0.0.1:${JS_CPORT[$i]}" \
		--routes "$routes" >>"$JSW/n$i/log" 2>&1 &
	JS_PID[$i]=$!
}

js_node_stop() {	# js_node_stop I
	[ -n "${JS_PID[$1]:-}" ] || return 0
	kill -9 "${JS_PID[$1]}" 2>/dev/null
	wait "${JS_PID[$1]}" 2>/dev/null
	JS_PID[$1]=""
}

js_server_pids() {
	local p
	for p in "${JS_PID[@]}"; do [ -n "$p" ] && echo "$p"; done
}

# wait until JetStream answers API requests (a meta leader is elected)
js_wait_leader() {	# js_wait_leader PROBE [SECONDS]
	local t=0 max=$((${2:-30} * 10))
	while [ "$t" -lt "$max" ]; do
		"$1" leader "$JS_URLS" DKIM_IN >/dev/null 2>&1 && return 0
		sleep 0.1
		t=$((t + 1))
	done
	return 1
}

js_cluster_start() {	# js_cluster_start PROBE
	local ports i
	read -r -a ports <<<"$(js_free_ports 6)"
	for i in 0 1 2; do
		JS_PORT[$i]=${ports[$i]}
		JS_CPORT[$i]=${ports[$((i + 3))]}
	done
	JS_URLS="nats://127.0.0.1:${JS_PORT[0]},nats://127.0.0.1:${JS_PORT[1]},nats://127.0.0.1:${JS_PORT[2]}"
	for i in 0 1 2; do js_node_start "$i"; done
	js_wait_leader "$1" 30
}

js_cluster_stop() {
	local i
	for i in 0 1 2; do
		[ -n "${JS_PID[$i]:-}" ] && kill -TERM "${JS_PID[$i]}" 2>/dev/null
	done
	for i in 0 1 2; do
		[ -n "${JS_PID[$i]:-}" ] || continue
		for _ in $(seq 1 30); do kill -0 "${JS_PID[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -9 "${JS_PID[$i]}" 2>/dev/null
		wait "${JS_PID[$i]}" 2>/dev/null
		JS_PID[$i]=""
	done
}
