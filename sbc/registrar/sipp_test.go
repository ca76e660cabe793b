package registrar

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// TestSIPpRegister runs the SIPp REGISTER-with-digest scenario against the UDP test server.
func TestSIPpRegister(t *testing.T) {
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("!!! SKIPPED: sipp (Debian sip-tester) is not installed; CI installs it !!!")
	}
	// SIPp answers only the first challenge and only knows MD5: offer MD5 alone.
	reg, addr, _ := startServerAlgs(t, []string{digest.MD5})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errFile := t.TempDir() + "/err.log"
	cmd := exec.CommandContext(ctx, sipp, "-sf", "testdata/sipp/register.xml", "-inf", "testdata/sipp/users.csv",
		"-i", "127.0.0.1", "-p", "0", "-m", "1", "-timeout", "10s", "-trace_err", "-error_file", errFile, "-trace_msg", "-message_file", errFile+".msg", addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e, _ := os.ReadFile(errFile)
		m, _ := os.ReadFile(errFile + ".msg")
		e = append(e, m...)
		t.Fatalf("sipp: %v\n%s\n%s", err, tail(string(out)), e)
	}
	if len(reg.Bindings("boardroom")) != 1 {
		t.Fatal("no binding after SIPp registered")
	}
}

func tail(s string) string {
	if i := strings.LastIndex(s, "\n\n"); i > 0 && len(s)-i < 4000 {
		return s[i:]
	}
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
