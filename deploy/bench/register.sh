#!/bin/bash
# register.sh HOST:PORT RATE COUNT [RATES...]: SIPp REGISTER + digest (register.xml, rooms from
# rooms.csv) against a running node at RATE/s for COUNT registrations; one line per rate:
#   rate=R achieved=A/s ok=S failed=F success=P retrans=X rtt_avg_ms=M held=yes|no
# held: >= 99.9% succeeded and SIPp kept the asked rate (within 5%). Start the node first:
#   go build -o /tmp/portcullis ./cmd/portcullis
#   /tmp/portcullis serve --config deploy/bench/portcullis-register.yaml &
#   deploy/bench/register.sh 127.0.0.1:5060 3000 30000 4000 6000
# SIPp gets 4 MiB socket buffers (-buff_size; the kernel caps it at net.core.rmem_max): with its
# default 64 KiB, SIPp (one thread, on the same cores as the node) fell behind reading the
# node's answers above ~5,000/s, the kernel dropped them (UdpRcvbufErrors matched its
# retransmissions one for one) and its retransmissions collapsed the run. Check the cap:
#   sysctl net.core.rmem_max   # >= 4194304, else: sysctl -w net.core.rmem_max=4194304
set -u
target=$1 count=$3
rates=("$2" "${@:4}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for rate in "${rates[@]}"; do
	rm -f stat.csv
	timeout $((count / rate + 60)) sipp "$target" -sf "$here/register.xml" -inf "$here/rooms.csv" -i 127.0.0.1 -p 0 \
		-r "$rate" -m "$count" -l 20000 -nostdin -timeout $((count / rate + 40)) -timeout_error \
		-trace_stat -stf stat.csv -fd 3600 -max_socket 60000 -buff_size 4194304 >/dev/null 2>&1
	python3 - "$rate" <<'PY'
import csv, sys
rows = list(csv.reader(open("stat.csv"), delimiter=";"))
h, last = rows[0], rows[-1]
g = lambda k: last[h.index(k)]
def ms(t):
    hh, mm, ss, us = t.split(":")
    return (int(hh)*3600 + int(mm)*60 + int(ss))*1000 + int(us)/1000
rate = int(sys.argv[1])
ok, failed, retrans = int(g("SuccessfulCall(C)")), int(g("FailedCall(C)")), int(g("Retransmissions(C)"))
ach = float(g("CallRate(C)"))
succ = ok / max(ok + failed, 1)
held = succ >= 0.999 and ach >= 0.95 * rate
print(f"rate={rate} achieved={ach:.0f}/s ok={ok} failed={failed} success={succ:.2%} retrans={retrans} "
      f"rtt_avg_ms={ms(g('ResponseTime1(C)')):.1f} held={'yes' if held else 'no'}", flush=True)
PY
done
