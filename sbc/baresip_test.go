package sbc

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/media"
)

// baresip is one baresip process acting as a room system, driven through its stdin.
type baresip struct {
	out   *lockedBuffer
	stdin io.WriteCloser
}

// startBaresip runs baresip registered at the node as room; it sends a 440 Hz tone as audio
// and answers calls by itself when autoAnswer.
func startBaresip(t *testing.T, n *Node, room, pass string, autoAnswer bool) *baresip {
	t.Helper()
	bin := testpeer.Require(t, "baresip")
	dir := t.TempDir()
	tone := filepath.Join(dir, "tone.wav")
	if err := os.WriteFile(tone, toneWAV(8000, 440, 30*time.Second), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("sip_listen\t127.0.0.1:%d\nmodule_path\t/usr/lib/baresip/modules\n"+
		"module\tstdio.so\nmodule\tg711.so\nmodule\taufile.so\n"+
		"module_app\taccount.so\nmodule_app\tmenu.so\n"+
		"audio_source\taufile,%s\naudio_player\taufile,%s\naudio_alert\taufile,%s\n"+
		"rtp_timeout\t0\n", testpeer.FreePort(t), tone, filepath.Join(dir, "play.wav"), filepath.Join(dir, "alert.wav"))
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := fmt.Sprintf("<sip:%s@%s>;auth_pass=%s;outbound=\"sip:%s;transport=udp\";regint=300;audio_codecs=PCMU",
		room, n.cfg.SIP.Domain, pass, n.addr(t, "udp"))
	if autoAnswer {
		acc += ";answermode=auto"
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(acc+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", dir)
	b := &baresip{out: &lockedBuffer{}}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	var err error
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("baresip %s output:\n%s", room, tailStr(b.out.String(), 4000))
		}
	})
	waitFor(t, func() bool { return len(n.reg.Bindings(room)) > 0 })
	return b
}

// toneWAV is a mono 16-bit PCM WAV file of a sine tone.
func toneWAV(rate, hz int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	data := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*float64(hz)*float64(i)/float64(rate)))
		binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
	}
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	return append(h, data...)
}

func (b *baresip) command(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(b.stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
}

// TestBaresipCallsBaresip: two baresip room systems registered at the node; room2 calls
// boardroom by name (it must answer a 407 first), boardroom answers by itself, audio flows
// through the relay both ways, room2 hangs up and both legs end cleanly.
func TestBaresipCallsBaresip(t *testing.T) {
	testpeer.Require(t, "baresip")
	cfg := callConfig(t)
	n := startNode(t, cfg)
	callee := startBaresip(t, n, "boardroom", "s3cret-board", true)
	caller := startBaresip(t, n, "room2", "room2-pass", false)
	time.Sleep(300 * time.Millisecond)
	caller.command(t, "/dial sip:boardroom@"+cfg.SIP.Domain)
	var id string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && id == "" {
		for _, c := range n.calls.Calls() {
			if c.State == state.CallAnswered {
				id = c.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id == "" {
		t.Fatalf("the call did not connect; caller:\n%s\ncallee:\n%s", tailStr(caller.out.String(), 3000), tailStr(callee.out.String(), 3000))
	}
	// audio through the relay both ways
	var streams []media.StreamStats
	waitFor(t, func() bool {
		v, _ := n.calls.MediaStats(id)
		streams, _ = v.([]media.StreamStats)
		return len(streams) == 1 && streams[0].AToB.Packets > 50 && streams[0].BToA.Packets > 50
	})
	t.Logf("relayed audio: %+v", streams[0].Stats)
	caller.command(t, "/hangup")
	var rec state.CallRecord
	waitFor(t, func() bool {
		recs := n.Store().State().Records(state.RecordQuery{})
		if len(recs) == 0 {
			return false
		}
		rec = recs[0]
		return n.calls.Active() == 0
	})
	if rec.Status != 200 || rec.EndReason != "caller hung up" || rec.Room != "boardroom" || !strings.Contains(rec.From, "room2") {
		t.Fatalf("record %+v", rec)
	}
	waitFor(t, func() bool {
		return strings.Contains(callee.out.String(), "terminated") || strings.Contains(callee.out.String(), "closed")
	})
}
