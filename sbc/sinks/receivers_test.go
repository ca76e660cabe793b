package sinks

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Real receivers on 127.0.0.1, and what they got.

// collector counts the items a receiver got, by dedup key.
type collector struct {
	mu  sync.Mutex
	ids map[string]int
	bad []string // malformed deliveries
}

func newCollector() *collector { return &collector{ids: map[string]int{}} }

func (c *collector) add(id string) {
	c.mu.Lock()
	c.ids[id]++
	c.mu.Unlock()
}

func (c *collector) fail(format string, args ...any) {
	c.mu.Lock()
	c.bad = append(c.bad, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// missing returns how many of ids the receiver has not got.
func (c *collector) missing(ids []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, id := range ids {
		if c.ids[id] == 0 {
			n++
		}
	}
	return n
}

// stats returns distinct items, total deliveries and the malformed ones.
func (c *collector) stats() (distinct, total int, bad []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.ids {
		total += n
	}
	return len(c.ids), total, append([]string(nil), c.bad...)
}

var sdRe = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) portcullis - (call-record|security-event) \[portcullis@32473 id="((?:[^"\\\]]|\\.)*)" type="((?:[^"\\\]]|\\.)*)"\] `)

// checkSyslog parses one RFC 5424 message as formatSyslog writes it and returns its dedup key;
// full says whether the JSON MSG must be complete (not a truncated datagram).
func checkSyslog(msg []byte, full bool) (string, error) {
	m := sdRe.FindSubmatch(msg)
	if m == nil {
		return "", fmt.Errorf("not an RFC 5424 message of ours: %.120q", msg)
	}
	if pri, _ := strconv.Atoi(string(m[1])); pri > 191 {
		return "", fmt.Errorf("PRI %d", pri)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(m[2])); err != nil && string(m[2]) != "-" {
		return "", fmt.Errorf("timestamp %q: %v", m[2], err)
	}
	id := unescapeParam(string(m[5]))
	if !full {
		return id, nil
	}
	var env struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(msg[len(m[0]):], &env); err != nil {
		return "", fmt.Errorf("MSG is not JSON: %v", err)
	}
	if env.ID != id {
		return "", fmt.Errorf("SD id %q, MSG id %q", id, env.ID)
	}
	return id, nil
}

func unescapeParam(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}

// syslogStream is a TCP (or TLS) syslog receiver that reads octet-counted frames (RFC 6587).
type syslogStream struct {
	*collector
	ln net.Listener

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newSyslogStream(t *testing.T, cfg *tls.Config) *syslogStream {
	t.Helper()
	return listenSyslogStream(t, "127.0.0.1:0", cfg)
}

// newSyslogStreamAt listens on addr again (a receiver back after an outage).
func newSyslogStreamAt(t *testing.T, addr string) *syslogStream {
	t.Helper()
	return listenSyslogStream(t, addr, nil)
}

func listenSyslogStream(t *testing.T, addr string, cfg *tls.Config) *syslogStream {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	for range 100 { // a port that was ours a moment ago may be taken in between
		if cfg != nil {
			ln, err = tls.Listen("tcp", addr, cfg)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &syslogStream{collector: newCollector(), ln: ln}
	t.Cleanup(func() {
		ln.Close()
		r.closeConns()
		r.wg.Wait()
	})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				r.readFrames(bufio.NewReader(c))
			}()
		}
	}()
	return r
}

// closeConns closes the accepted connections.
func (r *syslogStream) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func (r *syslogStream) readFrames(br *bufio.Reader) {
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && lenStr != "" {
				r.fail("frame length: %v", err)
			}
			return
		}
		n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
		if err != nil || n <= 0 || n > 1<<20 {
			r.fail("frame length %q", lenStr)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			r.fail("short frame: %v", err)
			return
		}
		id, err := checkSyslog(msg, true)
		if err != nil {
			r.fail("%v", err)
			continue
		}
		r.add(id)
	}
}

// syslogUDP is a UDP syslog receiver: one message per datagram.
type syslogUDP struct {
	*collector
	pc   net.PacketConn
	full bool
}

func newSyslogUDP(t *testing.T) *syslogUDP {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	r := &syslogUDP{collector: newCollector(), pc: pc, full: true}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			id, err := checkSyslog(buf[:n], r.full)
			if err != nil {
				r.fail("%v", err)
				continue
			}
			r.add(id)
		}
	}()
	return r
}

// hookServer is a webhook receiver that checks the signature; it can go down (its listener
// closed, so connections are refused) and come back on the same port.
type hookServer struct {
	*collector
	t      *testing.T
	secret []byte
	header string
	addr   string

	mu  sync.Mutex
	srv *http.Server
}

func newHookServer(t *testing.T, secret, header string) *hookServer {
	t.Helper()
	h := &hookServer{collector: newCollector(), t: t, secret: []byte(secret), header: header, addr: "127.0.0.1:0"}
	h.up()
	t.Cleanup(h.down)
	return h
}

func (h *hookServer) url() string { return "http://" + h.addr + "/hook" }

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		h.fail("%s with %q", r.Method, r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if len(h.secret) > 0 && !hmac.Equal([]byte(r.Header.Get(h.header)), []byte(Sign(h.secret, body))) {
		h.fail("bad signature %q", r.Header.Get(h.header))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var items []struct {
		ID     string          `json:"id"`
		Type   string          `json:"type"`
		Record json.RawMessage `json:"record"`
		Event  json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(body, &items); err != nil {
		h.fail("body: %v", err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	for _, it := range items {
		if it.ID == "" || (it.Type == TypeRecord) == (len(it.Record) == 0) || (it.Type == TypeEvent) == (len(it.Event) == 0) {
			h.fail("item %+v", it)
			continue
		}
		h.add(it.ID)
	}
	w.WriteHeader(http.StatusNoContent)
}

// up starts serving (on the same port after a down).
func (h *hookServer) up() {
	h.t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port was ours a moment ago; another test may take it in between
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("webhook receiver back up on %s: %v", h.addr, err)
	}
	h.addr = ln.Addr().String()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every connection: deliveries are refused.
func (h *hookServer) down() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.srv != nil {
		_ = h.srv.Close()
		h.srv = nil
	}
}

// testTLS returns a server config with a fresh self-signed certificate for 127.0.0.1 and a
// client config that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem.test"},
		DNSNames: []string{"siem.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, ServerName: "siem.test", MinVersion: tls.VersionTLS12}
}
