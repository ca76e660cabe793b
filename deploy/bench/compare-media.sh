#!/bin/bash
# compare-media.sh --edge HOST:PORT --pids "PID..." [--rate PPS] [--hold S] [--user U --pass P] [--label L]
# The media profile of ../shared/bench/compare.sh at a chosen packet rate, driven by this repo's
# cmd/portcullis-load (batched sendmmsg/recvmmsg, so the tool is not the limit at 100k packets/s):
# audio (50 pps) + video (200 pps of 1200 bytes) per call, both directions, so RATE/500 calls, run
# against the edge under test (already running; its pids given so its CPU can be read) and then
# against the anchor (Kamailio + rtpengine, started and stopped here) in the same run.
#
# Accounting, per packet relayed (rtp_recv of the tool; 1 us/packet == 1% of a core per 10k pps):
#   edge_us_per_pkt        the edge's processes (/proc/PID/stat utime+stime, children included),
#                          as compare.sh does.
#   host_us_per_pkt        machine-wide busy (/proc/stat user+nice+system+irq+softirq) less the
#                          tool's own CPU, as compare.sh does, and less the CPU of the other user
#                          processes alive through the run (other work on a shared machine).
#   host_us_per_pkt_net    machine-wide busy less a baseline: the tool alone (-selftest -pps RATE,
#                          caller to callee with no edge) measured the same way just before. On
#                          loopback the kernel delivers a packet in the sender's softirq, charged
#                          to the sender: a kernel fast path's forwarding is charged to the tool,
#                          so "less the tool's CPU" hides it. The baseline charges it to the edge.
#   involved_us_per_pkt_net the same over the processes involved only (edge, tool, kernel threads
#                          such as ksoftirqd) instead of the whole machine: on a machine shared
#                          with other jobs, the figure their short-lived processes do not blur.
# compare.sh's own figures use the peak packet rate over the whole wall time (setup, ramp and
# teardown included), which understates the cost per packet; these use packets actually relayed.
# The anchor listens on SIP_PORT (default 5070) as in ../shared/bench/kamailio/start.sh; LOAD_ARGS
# are added to every portcullis-load command (e.g. "-caller 127.0.0.1:5280 -callee 127.0.0.1:5290
# -rtp-port 29990" where other jobs use the default ports).
# The tool sends video in frames, each frame one UDP GSO message (its defaults): the edges
# receive one datagram per packet either way. For an edge's kernel fast path use
# LOAD_ARGS="-gso=false": the eBPF program leaves GSO aggregates to userspace (a NIC delivers
# datagrams one by one), so with GSO the video would be relayed in userspace.
# Needs: kamailio, rtpengine (Debian rtpengine-daemon), go, python3. Everything on 127.0.0.1.
set -u
edge= pids= user= pass= rate=100000 hold=10 label=portcullis
while [ $# -gt 0 ]; do
  case $1 in
    --edge) edge=$2; shift 2 ;; --pids) pids=$2; shift 2 ;;
    --user) user=$2; shift 2 ;; --pass) pass=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;; --hold) hold=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$edge" ] && [ -n "$pids" ] || { echo "need --edge and --pids" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH_DIR:-$repo/../shared/bench}
[ -x "$bench/kamailio/start.sh" ] || bench=/work/shared/bench
work=$(mktemp -d)
cleanup() { [ -f "$work/kamailio.pid" ] && kill "$(cat "$work/kamailio.pid")" 2>/dev/null
            [ -f "$work/rtpengine.pid" ] && kill "$(cat "$work/rtpengine.pid")" 2>/dev/null
            rm -rf "$work"; }
trap cleanup EXIT
(cd "$repo" && go build -o "$work/load" ./cmd/portcullis-load) || exit 1

calls=$(( (rate + 499) / 500 ))
cps=$(( calls / 4 > 50 ? calls / 4 : 50 ))  # ramp over about 4 s at most

cpu_ticks() { local t=0 p; for p in $1; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
host_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
all_pids() { local p out=""; for p in $1; do out="$out $p $(pgrep -P "$p" | tr '\n' ' ')"; done; echo $out; }
# utime+stime of every process except the given pids: "pid ticks u|k" lines (k: kernel thread,
# e.g. ksoftirqd doing deferred packet work; u: a user process, e.g. another job on the machine)
others() { python3 - "$1" <<'EOF'
import os,sys
skip=set(sys.argv[1].split()) | {str(os.getpid()), str(os.getppid())}
for p in os.listdir("/proc"):
    if not p.isdigit() or p in skip: continue
    try:
        kind="u" if open(f"/proc/{p}/cmdline","rb").read() else "k"
        f=open(f"/proc/{p}/stat").read().rsplit(")",1)[1].split()
        print(p, int(f[11])+int(f[12]), kind)
    except OSError: pass
EOF
}

# measure NAME PIDS CMD... -> one JSON line (the tool's, plus the accounting above)
measure() {
  local name=$1 p=$2; shift 2
  local t0 h0 o0 t1 h1 o1 out
  o0=$(others "$p"); t0=$(cpu_ticks "$p"); h0=$(host_busy)
  out=$("$@" 2>/dev/null | tail -1)
  t1=$(cpu_ticks "$p"); h1=$(host_busy); o1=$(others "$p")
  python3 - "$name" "$out" $((t1 - t0)) $((h1 - h0)) "$o0" "$o1" "${base_us:-}" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json,os,sys
name,out,ticks,host,o0,o1,base,load=sys.argv[1:9]
hz=os.sysconf("SC_CLK_TCK")
d=json.loads(out)
if d.get("selftest"):  # the tool alone: one step
    st=d["steps"][0]; d={"rtp_recv":st.get("rtp_recv",0),"tool_cpu_pct":st["tool_cpu_pct"],"wall_s":d["step_s"],
       "loss_pct":st["loss_pct"],"lat_us_p50":st["lat_us_p50"],"lat_us_p99":st["lat_us_p99"],"send_skipped":st["send_skipped"]}
pk=d.get("rtp_recv") or 0; wall=d.get("wall_s") or 1
a={l.split()[0]:l.split()[1:] for l in o0.splitlines()}; b={l.split()[0]:l.split()[1:] for l in o1.splitlines()}
oth=sum(int(b[p][0])-int(a[p][0]) for p in b if p in a and b[p][1]=="u")/hz
kth=sum(int(b[p][0])-int(a[p][0]) for p in b if p in a and b[p][1]=="k")/hz
tool=(d.get("tool_cpu_pct") or 0)/100*wall
hostc=int(host)/hz
r={"edge":name,"pps_avg":round(pk/wall) if wall else 0,"loss_pct":d.get("loss_pct"),"steady_loss_pct":d.get("steady_loss_pct"),
   "lat_us_p50":d.get("lat_us_p50"),"lat_us_p99":d.get("lat_us_p99"),"lat_us_max":d.get("lat_us_max"),
   "ok":d.get("ok"),"calls":d.get("calls"),"rtp_recv":pk,"send_skipped":d.get("send_skipped"),"tool_limited":d.get("tool_limited"),
   "edge_cpu_s":round(int(ticks)/hz,2),"tool_cpu_s":round(tool,2),"others_cpu_s":round(oth,2),"kthreads_cpu_s":round(kth,2),"host_busy_s":round(hostc,2),
   "wall_s":wall,"loadavg1":float(load)}
if pk:
    r["edge_us_per_pkt"]=round(1e6*int(ticks)/hz/pk,2)
    r["host_us_per_pkt"]=round(1e6*(hostc-tool-oth)/pk,2)
    r["tool_us_per_pkt"]=round(1e6*tool/pk,2)
    inv=int(ticks)/hz+tool+kth  # edge, tool, kernel threads: what other jobs on the machine do not touch
    if base:
        b1,b2=map(float,base.split())
        r["host_us_per_pkt_net"]=round(1e6*(hostc-oth)/pk-b1,2)
        r["involved_us_per_pkt_net"]=round(1e6*inv/pk-b2,2)
    else: r["base"]="%.3f %.3f" % (1e6*(hostc-oth)/pk, 1e6*inv/pk)
print(json.dumps(r))
EOF
}

# The tool alone at the same rate: its machine-wide cost per packet is the baseline.
base_us=
b=$(measure tool-alone "" "$work/load" -selftest -video -pps "$rate" -hold "$hold" ${LOAD_ARGS:-})
echo "$b"
base_us=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("base",""))' "$b")

"$bench/kamailio/start.sh" "$work" >/dev/null 2>&1 || { echo "anchor did not start" >&2; exit 1; }
anchor_pids=$(all_pids "$(cat "$work/kamailio.pid") $(cat "$work/rtpengine.pid")")
edge_pids=$(all_pids "$pids")
e=$(measure "$label" "$edge_pids" "$work/load" -edge "$edge" -calls "$calls" -rate "$cps" -hold "$hold" -video ${user:+-user "$user" -pass "$pass"} ${LOAD_ARGS:-})
a=$(measure kamailio+rtpengine "$anchor_pids" "$work/load" -edge "127.0.0.1:${SIP_PORT:-5070}" -calls "$calls" -rate "$cps" -hold "$hold" -video ${LOAD_ARGS:-})
echo "$e"; echo "$a"
python3 - "$e" "$a" "$rate" <<'EOF'
import json,sys
e,a=json.loads(sys.argv[1]),json.loads(sys.argv[2])
def r(k): return "%.2f" % (e[k]/a[k]) if e.get(k) and a.get(k) else "n/a"
print("rate %s pps ratios edge/anchor: involved_us_per_pkt_net=%s host_us_per_pkt_net=%s host_us_per_pkt=%s edge_us_per_pkt=%s lat_p99=%s loss edge=%s%% anchor=%s%%" % (
    sys.argv[3], r("involved_us_per_pkt_net"), r("host_us_per_pkt_net"), r("host_us_per_pkt"), r("edge_us_per_pkt"), r("lat_us_p99"), e.get("loss_pct"), a.get("loss_pct")))
EOF
