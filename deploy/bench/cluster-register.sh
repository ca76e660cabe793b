#!/bin/bash
# cluster-register.sh RATE COUNT [leader|follower|single ...]: REGISTER + digest (register.sh)
# at RATE/s against a single node, then against the leader and a follower of a 3-node cluster,
# each node its own process on 127.0.0.1, and prints the CPU each process used per
# registration. On separate machines the entry node's CPU per registration is what bounds the
# rate; here the three processes share the machine, so their throughput is not.
#   go build -o /tmp/portcullis ./cmd/portcullis
#   deploy/bench/cluster-register.sh 3000 60000
# BIN overrides the binary (default /tmp/portcullis). Ports: SIP 5060/5062/5064, admin
# 8443-8445, cluster 7000-7002, media 40000-42999; data under /tmp/portcullis-bench-cluster.
set -eu
rate=$1 count=$2
shift 2
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(single leader follower)
bin=${BIN:-/tmp/portcullis}
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/portcullis-bench-cluster
pids=()
stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap stop EXIT

# config I: node I's config (I = 1..3); node 1 carries the rooms, the others join it.
config() {
	local i=$1 join=${2:-}
	sed -e "s#id: bench1, data_dir: /tmp/portcullis-bench-reg#id: bench$i, data_dir: $work/node$i#" \
		-e "s#udp://127.0.0.1:5060#udp://127.0.0.1:$((5058 + 2 * i))#" \
		-e "s#ports: 40000-40999#ports: $((39000 + 1000 * i))-$((39999 + 1000 * i))#" \
		-e "s#listen: 127.0.0.1:8443#listen: 127.0.0.1:$((8442 + i))#" \
		-e "s#bind: 127.0.0.1:7000#bind: 127.0.0.1:$((6999 + i))${join}#" \
		"$here/portcullis-register.yaml" >"$work/node$i.yaml"
	if [ "$i" != 1 ]; then sed -i '/^rooms:/,$d' "$work/node$i.yaml"; fi
}

# ready I: wait until node I's /readyz says it serves (caught up, config rooms written).
ready() {
	for _ in $(seq 1 300); do
		curl -sf -o /dev/null "http://127.0.0.1:$((8442 + $1))/readyz" && return 0
		sleep 0.1
	done
	echo "node $1 not ready; its log:" >&2
	tail -20 "$work/node$1.log" >&2
	exit 1
}

start() {
	local i=$1
	"$bin" serve --config "$work/node$i.yaml" >"$work/node$i.log" 2>&1 &
	pids+=($!)
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks (1/100 s)

for c in "${cases[@]}"; do
	stop
	rm -rf "$work"
	mkdir -p "$work"
	config 1
	start 1
	ready 1
	target=127.0.0.1:5060
	if [ "$c" != single ]; then
		tok=$("$bin" cluster join-token --data-dir "$work/node1" --ttl 1h 2>/dev/null)
		for i in 2 3; do
			config "$i" ", join: [127.0.0.1:7000], join_token: $tok"
			start "$i"
			ready "$i"
		done
		[ "$c" = follower ] && target=127.0.0.1:5062
		sleep 2 # every member has said which log formats it applies (one ping round)
	fi
	before=()
	for p in "${pids[@]}"; do before+=("$(cpu "$p")"); done
	line=$("$here/register.sh" "$target" "$rate" "$count")
	out="case=$c $line cpu_us_per_registration:"
	for k in "${!pids[@]}"; do
		out+=" node$((k + 1))=$((($(cpu "${pids[$k]}") - ${before[$k]}) * 10000 / count))"
	done
	echo "$out"
done
