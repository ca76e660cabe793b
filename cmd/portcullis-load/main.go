// Command portcullis-load measures a SIP edge (Portcullis, or any proxy / SBC, e.g. the Kamailio +
// rtpengine anchor) on loopback. It is ../shared/bench/callload with a batched media engine: the
// same flags and the same one line of JSON, so compare.sh can run either. It plays both ends of
// a call through the edge under test (UDP):
//
//   - a callee "room system" that REGISTERs an AOR at the edge (answering a digest MD5 challenge
//     with -user/-pass) and answers every INVITE, and
//   - a caller that places -calls calls at -rate calls/s to that AOR through the edge (INVITE
//     with SDP, ACK, BYE),
//
// then both ends exchange RTP through whatever media path the SDP answer gives them: audio (PCMU,
// 50 pps, 172-byte packets) and optionally video (H264 PT 96, -video-pps packets of 1200 bytes),
// for -hold seconds, then BYE. Every media endpoint has its own loopback address (127.10.x.y
// caller, 127.20.x.y callee, media-level c= lines) on a socket shared by all calls: a sender
// goroutine writes up to 64 packets of many calls per sendmmsg(2), choosing each packet's source
// address with IP_PKTINFO, and one goroutine per socket reads batches with recvmmsg(2).
//
// It measures call setup time (INVITE sent -> 200 OK received), RTP loss (overall, in each
// stream's first 200 ms while a relay latches, and in steady state), one-way latency (every
// payload carries its monotonic send time and sequence number), reordering, duplicates and the
// peak relayed packet rate, and prints ONE line of JSON on stdout (callload's fields). It exits 0
// whenever the run finished, whatever the figures; non-zero only when the tool itself could not
// run (bad flags, sockets, or the edge refused the REGISTER).
//
// -selftest measures the tool's own ceiling (caller endpoints straight to callee endpoints, no
// SIP, no edge); -sink HOST:PORT|self measures what it offers: the stream mix sent to a UDP drop,
// stepped up until the senders fall behind (run it with GOMAXPROCS=1 for "one core").
//
// Only 127.0.0.0/8 is ever a target: SIP and RTP destinations outside it are refused.
//
// Usage (the edge must already be running; Linux only):
//
//	go build -o /tmp/portcullis-load ./cmd/portcullis-load
//	/tmp/portcullis-load -calls 100 -rate 50 -hold 10
//	/tmp/portcullis-load -edge 127.0.0.1:5060 -user room1 -pass s3cret -calls 200 -rate 50 -hold 10 -video
//	GOMAXPROCS=1 /tmp/portcullis-load -sink self -hold 3   # packets/s offered from one core
//	/tmp/portcullis-load -selftest
//	/tmp/portcullis-load -selftest -pps 100000 -hold 10   # one step: the tool's own cost at 100k pps
//
// Read tool_limited in the output: true means the tool itself fell behind its send schedule
// (send_skipped: packets more than 100 ms late were not sent) or its sockets dropped packets
// (tool_rx_drops), so the figures show the machine's limit, not only the edge's.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/sys/unix"
)

type config struct {
	edge, calleeAddr, callerAddr netip.AddrPort
	aor, user, pass              string
	calls                        int
	rate                         float64
	hold                         time.Duration
	video                        bool
	videoPPS, videoFPS           int
	gso                          bool
	calleePorts, callerPorts     string
	workers                      int
	rtpPort                      int
	verbose                      bool
	selftestPPS                  int
}

// report is the one JSON line printed at the end of a SIP run. Packet counts cover both
// directions of every stream; loss is against packets actually sent (a packet counts once however
// often it arrives); latency is one-way, send to receive; pps_relayed / pps_sent_peak are the
// busiest one-second buckets of packets received / sent; startup = each stream's first 200 ms of
// schedule, steady = the rest. tool_cpu_pct is percent of one core.
type report struct {
	Calls          int            `json:"calls"`
	OK             int            `json:"ok"`
	Failed         int            `json:"failed"`
	SetupP50       float64        `json:"setup_ms_p50"`
	SetupP99       float64        `json:"setup_ms_p99"`
	RTPSent        uint64         `json:"rtp_sent"`
	RTPRecv        uint64         `json:"rtp_recv"`
	LossPct        float64        `json:"loss_pct"`
	SteadyLossPct  float64        `json:"steady_loss_pct"`
	LatP50         float64        `json:"lat_us_p50"`
	LatP99         float64        `json:"lat_us_p99"`
	LatMax         float64        `json:"lat_us_max"`
	PPSRelayed     uint64         `json:"pps_relayed"`
	StartupLossPct float64        `json:"startup_loss_pct"`
	PPSSentPeak    uint64         `json:"pps_sent_peak"`
	SetupMax       float64        `json:"setup_ms_max"`
	Reordered      uint64         `json:"reordered"`
	Duplicates     uint64         `json:"duplicates"`
	Misrouted      uint64         `json:"misrouted"`
	Garbage        uint64         `json:"garbage"`
	SendErrors     uint64         `json:"send_errors"`
	SendSkipped    uint64         `json:"send_skipped"`
	ToolRxDrops    uint64         `json:"tool_rx_drops"`
	ToolLimited    bool           `json:"tool_limited"`
	FailReasons    map[string]int `json:"fail_reasons,omitempty"` // SIP status code, "timeout", ...
	ByeFailed      int            `json:"bye_failed"`
	RemoteBye      int            `json:"remote_bye"`
	CalleeInvites  int64          `json:"callee_invites"`
	CalleeNoAck    int64          `json:"callee_no_ack"`
	CalleeRejected int64          `json:"callee_rejected"`
	HostUDPDrops   uint64         `json:"host_udp_drops"`
	ToolCPUPct     float64        `json:"tool_cpu_pct"`
	WallS          float64        `json:"wall_s"`
	Error          string         `json:"error,omitempty"`
}

func main() {
	var cfg config
	edge := flag.String("edge", "127.0.0.1:5070", "SIP edge under test (UDP host:port, loopback)")
	calleeAddr := flag.String("callee", "127.0.0.1:5090", "callee (room system) SIP address")
	callerAddr := flag.String("caller", "127.0.0.1:5080", "caller SIP address")
	flag.StringVar(&cfg.aor, "aor", "room1", "AOR the callee registers and the caller calls")
	flag.StringVar(&cfg.user, "user", "", "digest username for 401/407 challenges (default: the AOR)")
	flag.StringVar(&cfg.pass, "pass", "", "digest password (empty: no auth)")
	flag.IntVar(&cfg.calls, "calls", 100, "number of calls")
	flag.Float64Var(&cfg.rate, "rate", 10, "new calls per second")
	hold := flag.Float64("hold", 10, "seconds of media per call before BYE (selftest: seconds per step, default 3)")
	flag.BoolVar(&cfg.video, "video", false, "add a video stream (H264 PT 96) to every call")
	flag.IntVar(&cfg.videoPPS, "video-pps", 200, "video packets per second per direction (1200 bytes each)")
	flag.IntVar(&cfg.videoFPS, "video-fps", 30, "video frames per second: each frame's packets leave back to back at its time (0: packets evenly paced)")
	flag.BoolVar(&cfg.gso, "gso", true, "send each video frame as one UDP GSO message (UDP_SEGMENT); the edge still receives one datagram per packet")
	flag.StringVar(&cfg.calleePorts, "callee-ports", "", "ignored (callload compatibility): endpoints are addresses, see -rtp-port")
	flag.StringVar(&cfg.callerPorts, "caller-ports", "", "ignored (callload compatibility): endpoints are addresses, see -rtp-port")
	flag.IntVar(&cfg.rtpPort, "rtp-port", 19990, "first RTP port: workers × stream kinds sockets on consecutive ports, bound to 0.0.0.0")
	sink := flag.String("sink", "", "measure the offered packet rate: send the stream mix to this loopback host:port (a UDP drop; \"self\": open one here) and report packets/s sent")
	flag.IntVar(&cfg.workers, "workers", 1, "RTP sender goroutines, each with one socket per stream kind (and a recvmmsg goroutine per socket)")
	selftest := flag.Bool("selftest", false, "measure the tool's own RTP ceiling without SIP or edge")
	flag.IntVar(&cfg.selftestPPS, "pps", 0, "with -selftest: run one step at this offered packet rate instead of stepping up (the tool's own cost at a given rate)")
	flag.BoolVar(&cfg.verbose, "v", false, "log progress to stderr")
	flag.BoolVar(&sip.SIPDebug, "sip-trace", false, "print every SIP message sent and received to stderr")
	flag.Parse()

	level := slog.LevelWarn
	if cfg.verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	kinds, err := cfg.complete(*edge, *calleeAddr, *callerAddr, *hold)
	if err != nil {
		fatal(err)
	}
	var out any
	switch {
	case *sink != "":
		out, err = runSink(cfg, kinds, *sink, stepOf(cfg))
	case *selftest:
		out, err = runSelftest(cfg, kinds, stepOf(cfg))
	default:
		out, err = runCalls(cfg, kinds)
	}
	if out != nil {
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
	if err != nil {
		fatal(err)
	}
}

// complete fills cfg from the flags that need parsing (loopback addresses, the hold time in
// seconds) and defaults, checks the bounds and returns the stream kinds of every call.
func (cfg *config) complete(edge, calleeAddr, callerAddr string, hold float64) ([]*streamKind, error) {
	for _, a := range []struct {
		s   string
		dst *netip.AddrPort
	}{{edge, &cfg.edge}, {calleeAddr, &cfg.calleeAddr}, {callerAddr, &cfg.callerAddr}} {
		var err error
		if *a.dst, err = netip.ParseAddrPort(a.s); err == nil {
			err = loopbackOnly(a.dst.Addr().String())
		}
		if err != nil {
			return nil, fmt.Errorf("address %q: %v (need IPv4 loopback host:port)", a.s, err)
		}
	}
	if cfg.user == "" {
		cfg.user = cfg.aor
	}
	if cfg.calls < 1 || cfg.rate <= 0 || hold <= 0 || cfg.videoPPS < 1 || cfg.workers < 1 {
		return nil, fmt.Errorf("-calls, -rate, -hold, -video-pps and -workers must be positive")
	}
	if cfg.videoFPS < 0 || cfg.videoFPS > cfg.videoPPS {
		return nil, fmt.Errorf("-video-fps must be between 0 and -video-pps")
	}
	cfg.hold = time.Duration(hold * float64(time.Second))
	kinds := []*streamKind{{idx: 0, media: "audio", pt: 0, codec: "PCMU/8000", pps: 50, size: 172, tsHz: 8000}}
	if cfg.video {
		kinds = append(kinds, &streamKind{idx: 1, media: "video", pt: 96, codec: "H264/90000", pps: cfg.videoPPS, size: 1200, tsHz: 90000, fps: cfg.videoFPS})
	}
	return kinds, nil
}

// stepOf is the length of one step of -sink and -selftest: -hold when given, else 3 s.
func stepOf(cfg config) time.Duration {
	step := 3 * time.Second
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "hold" {
			step = cfg.hold
		}
	})
	return step
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "portcullis-load:", err)
	os.Exit(1)
}

// ---- selftest ----

type selftestStep struct {
	OfferedPPS  int     `json:"offered_pps"`
	AchievedPPS int     `json:"achieved_pps"`
	Streams     int     `json:"streams"`
	LossPct     float64 `json:"loss_pct"`
	Skipped     uint64  `json:"send_skipped"`
	LatP50      float64 `json:"lat_us_p50"`
	LatP99      float64 `json:"lat_us_p99"`
	LatMax      float64 `json:"lat_us_max"`
	CPUPct      float64 `json:"tool_cpu_pct"`
	Recv        uint64  `json:"rtp_recv,omitempty"`
	SentPeak    uint64  `json:"pps_sent_peak,omitempty"`
	PerSyscall  float64 `json:"packets_per_sendmmsg,omitempty"`
	PerMessage  float64 `json:"packets_per_message,omitempty"` // above 1: GSO frames
}

type selftestReport struct {
	Selftest bool           `json:"selftest"`
	MaxPPS   int            `json:"max_pps"`
	StepS    float64        `json:"step_s"`
	Workers  int            `json:"workers"`
	Steps    []selftestStep `json:"steps"`
	Limit    string         `json:"limit"`
}

// runSelftest steps the offered load up (same stream mix as a run, caller sockets sending
// straight to callee sockets and back) until loss exceeds 1% or the receive rate falls below 95%
// of what was offered.
func runSelftest(cfg config, kinds []*streamKind, step time.Duration) (*selftestReport, error) {
	perCall := 0
	for _, k := range kinds {
		perCall += 2 * k.pps
	}
	rep := &selftestReport{Selftest: true, StepS: step.Seconds(), Workers: cfg.workers, Limit: "offered load list exhausted"}
	targets := []int{50_000, 100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 800_000, 1_000_000}
	if cfg.selftestPPS > 0 {
		targets = []int{cfg.selftestPPS}
	}
	for _, target := range targets {
		calls := (target + perCall - 1) / perCall
		st, err := selftestStepRun(cfg, kinds, calls, step, nil)
		if err != nil {
			return rep, err
		}
		st.OfferedPPS = calls * perCall
		rep.Steps = append(rep.Steps, st)
		slog.Info("selftest step", "offered", st.OfferedPPS, "achieved", st.AchievedPPS, "loss_pct", st.LossPct)
		if st.LossPct > 1 || float64(st.AchievedPPS) < 0.95*float64(st.OfferedPPS) {
			rep.Limit = fmt.Sprintf("did not keep up at %d pps offered", st.OfferedPPS)
			break
		}
		rep.MaxPPS = max(rep.MaxPPS, st.AchievedPPS)
	}
	return rep, nil
}

// Loopback networks of the two sides' media endpoints: 127.10.x.y (caller), 127.20.x.y (callee).
const (
	callerNet = 10
	calleeNet = 20
)

// selftestStepRun runs calls calls' worth of streams for step: caller endpoints to callee
// endpoints and back through no edge, or, with sink set, caller endpoints to sink only (nothing
// comes back: the step measures what the tool offers).
func selftestStepRun(cfg config, kinds []*streamKind, calls int, step time.Duration, sink *netip.AddrPort) (selftestStep, error) {
	var st selftestStep
	eng, err := newEngine(calls*2*len(kinds), cfg.workers, kinds, cfg.rtpPort, cfg.gso)
	if err != nil {
		return st, err
	}
	defer eng.stop()
	callerPorts, calleePorts := newPortRange(eng, callerNet), newPortRange(eng, calleeNet)
	var flows []*flow
	base := nowNs() + int64(50*time.Millisecond)
	for range calls {
		for _, k := range kinds {
			a, _ := callerPorts.open(k)
			b, _ := calleePorts.open(k)
			gap := int64(time.Second) / int64(k.pps) // random phase, as independent calls would have
			dirs := []struct {
				from *endpoint
				to   netip.AddrPort
			}{{a, netip.AddrPortFrom(b.addr(), uint16(b.port))}, {b, netip.AddrPortFrom(a.addr(), uint16(a.port))}}
			if sink != nil {
				dirs = []struct {
					from *endpoint
					to   netip.AddrPort
				}{{a, *sink}, {b, *sink}}
			}
			for _, d := range dirs {
				f, err := eng.send(d.from, d.to, k, k.pt, base+rand.Int64N(gap), step)
				if err != nil {
					return st, err
				}
				flows = append(flows, f)
			}
		}
	}
	cpu0, w0 := cpuSeconds(), time.Now()
	for _, f := range flows {
		<-f.done
	}
	// Achieved rate over the time it really took: senders that fall behind stretch the step.
	elapsed := time.Duration(nowNs() - base)
	eng.stop()
	ms := eng.stats()
	st.CPUPct = round3((cpuSeconds() - cpu0) / time.Since(w0).Seconds() * 100)
	st.Streams = len(flows)
	st.Skipped = ms.Skipped
	if sink != nil {
		st.AchievedPPS = int(float64(ms.Sent) / elapsed.Seconds())
		st.SentPeak = ms.PeakSentPPS
		var calls, msgs uint64
		for _, s := range eng.senders {
			calls += s.calls
			msgs += s.msgs
		}
		if calls > 0 && msgs > 0 {
			st.PerSyscall = round3(float64(ms.Sent) / float64(calls))
			st.PerMessage = round3(float64(ms.Sent) / float64(msgs))
		}
		return st, nil
	}
	st.AchievedPPS = int(float64(ms.Recv) / elapsed.Seconds())
	st.Recv = ms.Recv
	st.LossPct = lossPct(ms.Sent, ms.Recv)
	st.LatP50, st.LatP99, st.LatMax = us(ms.LatP50), us(ms.LatP99), us(ms.LatMax)
	return st, nil
}

// sinkReport is the output of -sink: the packet rate the tool offers from GOMAXPROCS cores.
type sinkReport struct {
	Sink       string         `json:"sink"`
	GOMAXPROCS int            `json:"gomaxprocs"`
	Workers    int            `json:"workers"`
	StepS      float64        `json:"step_s"`
	MaxPPS     int            `json:"max_offered_pps"` // highest rate sent on schedule (no packet skipped, >= 99% of target)
	Steps      []selftestStep `json:"steps"`
	Limit      string         `json:"limit"`
}

// runSink steps the offered rate up, sending the stream mix to a UDP drop, until the senders
// no longer keep their schedule.
func runSink(cfg config, kinds []*streamKind, target string, step time.Duration) (*sinkReport, error) {
	rep := &sinkReport{Sink: target, GOMAXPROCS: runtime.GOMAXPROCS(0), Workers: cfg.workers, StepS: step.Seconds(),
		Limit: "offered load list exhausted"}
	if target == "self" {
		// A socket that is never read, with the smallest receive buffer: the kernel drops.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return nil, err
		}
		target = fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
		rep.Sink = target + " (self: never read)"
	}
	dst, err := netip.ParseAddrPort(target)
	if err != nil || !dst.Addr().Is4() || !dst.Addr().IsLoopback() {
		return nil, fmt.Errorf("-sink %q: need an IPv4 loopback host:port", target)
	}
	perCall := 0
	for _, k := range kinds {
		perCall += 2 * k.pps
	}
	for _, want := range []int{100_000, 150_000, 200_000, 250_000, 300_000, 350_000, 400_000, 500_000, 600_000, 800_000, 1_000_000} {
		calls := (want + perCall - 1) / perCall
		st, err := selftestStepRun(cfg, kinds, calls, step, &dst)
		if err != nil {
			return rep, err
		}
		st.OfferedPPS = calls * perCall
		rep.Steps = append(rep.Steps, st)
		slog.Info("sink step", "target", st.OfferedPPS, "sent", st.AchievedPPS, "skipped", st.Skipped)
		if st.Skipped > 0 || float64(st.AchievedPPS) < 0.99*float64(st.OfferedPPS) {
			rep.Limit = fmt.Sprintf("fell behind at %d pps", st.OfferedPPS)
			break
		}
		rep.MaxPPS = st.AchievedPPS
	}
	return rep, nil
}

// ---- small helpers ----

// pctl is the nearest-rank percentile of sorted values.
func pctl(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func lossPct(sent, recv uint64) float64 {
	if sent == 0 || recv >= sent {
		return 0
	}
	return round3(float64(sent-recv) / float64(sent) * 100)
}

func us(ns int64) float64 { return math.Round(float64(ns)/100) / 10 }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func cpuSeconds() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// udpDrops is the host's UDP receive+send buffer overflow count (/proc/net/snmp): drops by any
// socket on the machine, the edge's included.
func udpDrops() uint64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var hdr, val []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Udp: ") {
			if hdr == nil {
				hdr = strings.Fields(l)
			} else {
				val = strings.Fields(l)
			}
		}
	}
	var n uint64
	for i, h := range hdr {
		if (h == "RcvbufErrors" || h == "SndbufErrors") && i < len(val) {
			v, _ := strconv.ParseUint(val[i], 10, 64)
			n += v
		}
	}
	return n
}
