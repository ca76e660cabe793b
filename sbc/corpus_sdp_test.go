package sbc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The endpoint corpus (testdata/corpus, issue #13 item 6): per file, one room system and one
// cloud service, each as its main SDP (audio, main video, FECC) and the m-lines its
// content-share re-INVITE adds (slides video, BFCP). The test derives every message of a call
// from them: offers as written, answers from the answerer's own m-lines matched by kind to the
// offer (RFC 3264: same m-line count and order, rejected with port 0 when the answerer has no
// such stream), a=setup:actpass answered active, one a=crypto and one BFCP floorctrl role.

// corpusPair is one corpus file.
type corpusPair struct {
	name               string // vendor/file
	roomUA, serviceUA  string
	hold               string // sendonly or inactive
	room, service      corpusSide
	sources            []string // the file's comment lines
	roomName, roomPass string   // the room's account on the node (set by the test)
}

type corpusSide struct {
	session []string   // v= .. t= and session a= lines
	main    [][]string // m-line blocks (first line m=)
	content [][]string
}

// all returns the side's m-line blocks with content shared.
func (s corpusSide) all() [][]string { return append(slices.Clone(s.main), s.content...) }

func loadCorpus(t *testing.T) []corpusPair {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var out []corpusPair
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := parseCorpus(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rel, _ := filepath.Rel("testdata/corpus", f)
		p.name = strings.TrimSuffix(filepath.ToSlash(rel), ".txt")
		out = append(out, p)
	}
	return out
}

func parseCorpus(text string) (corpusPair, error) {
	var p corpusPair
	sections := map[string][]string{}
	cur := ""
	for l := range strings.SplitSeq(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			p.sources = append(p.sources, strings.TrimSpace(strings.TrimPrefix(l, "#")))
		case strings.HasPrefix(l, "--- "):
			cur = strings.TrimSpace(strings.TrimPrefix(l, "--- "))
		case cur == "":
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "room-ua":
				p.roomUA = strings.TrimSpace(v)
			case "service-ua":
				p.serviceUA = strings.TrimSpace(v)
			case "hold":
				p.hold = strings.TrimSpace(v)
			}
		case strings.TrimSpace(l) != "":
			sections[cur] = append(sections[cur], strings.TrimSpace(l))
		}
	}
	if p.roomUA == "" || p.serviceUA == "" || (p.hold != "sendonly" && p.hold != "inactive") {
		return p, fmt.Errorf("room-ua, service-ua and hold (sendonly|inactive) are required")
	}
	var err error
	if p.room, err = corpusSideOf(sections["room"], sections["room-content"]); err != nil {
		return p, fmt.Errorf("room: %w", err)
	}
	if p.service, err = corpusSideOf(sections["service"], sections["service-content"]); err != nil {
		return p, fmt.Errorf("service: %w", err)
	}
	return p, nil
}

func corpusSideOf(main, content []string) (corpusSide, error) {
	var s corpusSide
	blocks := func(lines []string) [][]string {
		var out [][]string
		for _, l := range lines {
			if strings.HasPrefix(l, "m=") {
				out = append(out, []string{l})
			} else if len(out) > 0 {
				out[len(out)-1] = append(out[len(out)-1], l)
			}
		}
		return out
	}
	for _, l := range main {
		if strings.HasPrefix(l, "m=") {
			break
		}
		s.session = append(s.session, l)
	}
	s.main, s.content = blocks(main), blocks(content)
	if len(s.session) == 0 || len(s.main) == 0 || len(s.content) != 2 {
		return s, fmt.Errorf("want a session, main m-lines and two content m-lines (slides, BFCP)")
	}
	return s, nil
}

// mKind names what an m-line is for, to match an answer's m-lines to the offer's.
func mKind(block []string) string {
	f := strings.Fields(strings.TrimPrefix(block[0], "m="))
	if len(f) < 3 {
		return block[0]
	}
	if f[0] == "application" {
		if strings.Contains(strings.ToUpper(f[2]), "BFCP") {
			return "bfcp"
		}
		return "application:" + strings.Join(f[3:], " ") // FECC (H.224)
	}
	for _, l := range block[1:] {
		if v, ok := strings.CutPrefix(l, "a=content:"); ok {
			return f[0] + ":" + v
		}
	}
	return f[0]
}

// setPort returns the m= line with port p.
func setPort(mline string, p int) string {
	f := strings.Fields(mline)
	f[1] = strconv.Itoa(p)
	return strings.Join(f, " ")
}

func mPort(mline string) int {
	f := strings.Fields(mline)
	if len(f) < 2 {
		return -1
	}
	p, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return p
}

// renderSDP builds a body: the session lines with the endpoint's address (127.0.0.1, where
// its sockets are) in o= and c= and the given o= version, then the blocks with their ports
// set to ports[i] (0 where the block's port is 0).
func renderSDP(session []string, blocks [][]string, ports []int, version int) string {
	var b strings.Builder
	for _, l := range session {
		switch {
		case strings.HasPrefix(l, "o="):
			f := strings.Fields(l)
			if len(f) == 6 {
				f[2], f[5] = strconv.Itoa(version), "127.0.0.1"
				l = strings.Join(f, " ")
			}
		case strings.HasPrefix(l, "c="):
			l = "c=IN IP4 127.0.0.1"
		}
		b.WriteString(l + "\n")
	}
	for i, blk := range blocks {
		for j, l := range blk {
			if j == 0 && mPort(l) != 0 {
				l = setPort(l, ports[i])
			}
			if strings.HasPrefix(l, "c=") {
				l = "c=IN IP4 127.0.0.1"
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// removed returns blocks with the content m-lines (from index from) disabled: port 0, as a
// re-INVITE that ends content sharing sends them (RFC 3264 section 8.2).
func removed(blocks [][]string, from int) [][]string {
	out := slices.Clone(blocks)
	for i := from; i < len(out); i++ {
		out[i] = slices.Clone(out[i])
		out[i][0] = setPort(out[i][0], 0)
	}
	return out
}

// withDirection returns blocks with the direction of every enabled RTP m-line set to dir.
func withDirection(blocks [][]string, dir string) [][]string {
	out := make([][]string, len(blocks))
	for i, blk := range blocks {
		out[i] = slices.Clone(blk)
		if mPort(blk[0]) == 0 || !strings.Contains(blk[0], "RTP") {
			continue
		}
		for j, l := range out[i] {
			switch l {
			case "a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive":
				out[i][j] = "a=" + dir
			}
		}
	}
	return out
}

// answerBlocks builds the answerer's m-lines for an offer: for each offered m-line, the
// answerer's own block of the same kind (port 0 when the offer disabled it), or a rejection.
func answerBlocks(offer [][]string, own [][]string) [][]string {
	out := make([][]string, len(offer))
	for i, o := range offer {
		var mine []string
		for _, b := range own {
			if mKind(b) == mKind(o) {
				mine = b
				break
			}
		}
		if mine == nil {
			out[i] = []string{setPort(o[0], 0)}
			continue
		}
		out[i] = answerAttrs(o, mine)
		if mPort(o[0]) == 0 {
			out[i][0] = setPort(out[i][0], 0)
		}
	}
	return out
}

// answerAttrs turns the answerer's own block into an answer to offer: a=setup:actpass becomes
// active (RFC 4145, RFC 5763), only the first a=crypto stays (RFC 4568 answers carry one),
// a=floorctrl names one role complementing the offer's (RFC 8856 section 5).
func answerAttrs(offer, own []string) []string {
	offered := ""
	for _, l := range offer {
		if v, ok := strings.CutPrefix(l, "a=floorctrl:"); ok {
			offered = v
		}
	}
	var out []string
	crypto := false
	for _, l := range own {
		switch {
		case l == "a=setup:actpass":
			l = "a=setup:active"
		case strings.HasPrefix(l, "a=crypto:"):
			if crypto {
				continue
			}
			crypto = true
		case strings.HasPrefix(l, "a=floorctrl:"):
			l = "a=floorctrl:" + floorRole(offered, strings.TrimPrefix(l, "a=floorctrl:"))
		}
		out = append(out, l)
	}
	return out
}

func floorRole(offered, own string) string {
	can := func(v, role string) bool { return strings.Contains(v, role) || strings.Contains(v, "c-s") }
	for _, r := range [][2]string{{"s-only", "c-only"}, {"c-only", "s-only"}} {
		if can(own, r[0]) && can(offered, r[1]) {
			return r[0]
		}
	}
	return own
}

// sdpDoc is a body split for comparison.
type sdpDoc struct {
	session []string
	media   []sdpMedia
}

type sdpMedia struct {
	mtype, proto string
	port         int
	fmts         string
	conn         string
	bw, attrs    []string
}

func splitSDP(body string) sdpDoc {
	var d sdpDoc
	for l := range strings.SplitSeq(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "m=") {
			f := strings.Fields(strings.TrimPrefix(l, "m="))
			m := sdpMedia{port: mPort(l)}
			if len(f) >= 3 {
				m.mtype, m.proto, m.fmts = f[0], f[2], strings.Join(f[3:], " ")
			}
			d.media = append(d.media, m)
			continue
		}
		if len(d.media) == 0 {
			if strings.HasPrefix(l, "a=") {
				d.session = append(d.session, strings.TrimPrefix(l, "a="))
			}
			continue
		}
		m := &d.media[len(d.media)-1]
		switch {
		case strings.HasPrefix(l, "a="):
			m.attrs = append(m.attrs, strings.TrimPrefix(l, "a="))
		case strings.HasPrefix(l, "b="):
			m.bw = append(m.bw, l)
		case strings.HasPrefix(l, "c="):
			m.conn = l
		}
	}
	return d
}

var corpusICE = map[string]bool{"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true}

func attrKey(a string) string {
	k, _, _ := strings.Cut(a, ":")
	return k
}

// mustSurvive is the attribute list a relayed m-line must carry unchanged, in order: all but
// ICE (stripped, media.strip_ice), a=rtcp (the relay's address), a=rtcp-mux (kept only where
// both legs offered it) and, on TCP m-lines, a=setup (the relay takes the passive role).
func mustSurvive(attrs []string, tcp bool) []string {
	var out []string
	for _, a := range attrs {
		k := attrKey(a)
		if corpusICE[k] || k == "rtcp" || k == "rtcp-mux" || (tcp && k == "setup") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// compareRelayed reports how got (what the far side received) differs from sent (what the
// near side sent) beyond what the relay must change.
func compareRelayed(sent, got string, offer bool) []string {
	s, g := splitSDP(sent), splitSDP(got)
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if !slices.Equal(mustSurvive(s.session, false), mustSurvive(g.session, false)) {
		bad("session attributes: sent %q, got %q", s.session, g.session)
	}
	if len(s.media) != len(g.media) {
		bad("%d m-lines sent, %d received", len(s.media), len(g.media))
		return errs
	}
	for i, sm := range s.media {
		gm := g.media[i]
		tcp := strings.HasPrefix(strings.ToUpper(sm.proto), "TCP")
		if sm.mtype != gm.mtype || sm.proto != gm.proto || sm.fmts != gm.fmts {
			bad("m=%d: kind/proto/formats %s %s %s became %s %s %s", i, sm.mtype, sm.proto, sm.fmts, gm.mtype, gm.proto, gm.fmts)
		}
		switch {
		case sm.port == 0 && gm.port != 0:
			bad("m=%d: disabled m-line enabled with port %d", i, gm.port)
		case sm.port != 0 && (gm.port == 0 || gm.port == sm.port):
			bad("m=%d: port %d relayed as %d (want a relay port)", i, sm.port, gm.port)
		}
		if sw, gw := mustSurvive(sm.attrs, tcp), mustSurvive(gm.attrs, tcp); !slices.Equal(sw, gw) {
			bad("m=%d (%s %s): attributes\n  sent %q\n  got  %q", i, sm.mtype, sm.proto, sw, gw)
		}
		if !slices.Equal(sm.bw, gm.bw) {
			bad("m=%d: bandwidth %q became %q", i, sm.bw, gm.bw)
		}
		for _, a := range gm.attrs {
			if corpusICE[attrKey(a)] {
				bad("m=%d: ICE attribute %q reached the far side", i, a)
			}
		}
		if tcp && gm.port != 0 && !slices.Contains(gm.attrs, "setup:passive") {
			bad("m=%d: TCP m-line without a=setup:passive toward the far side: %q", i, gm.attrs)
		}
		sMux, gMux := slices.Contains(sm.attrs, "rtcp-mux"), slices.Contains(gm.attrs, "rtcp-mux")
		if gMux && !sMux || offer && sMux && gm.port != 0 && !gMux {
			bad("m=%d: a=rtcp-mux sent %v, received %v", i, sMux, gMux)
		}
	}
	return errs
}

// TestCorpusChecksCatchDamage: the corpus comparison flags each kind of damage a rewrite could
// do to a relayed SDP, so that a passing corpus run means the attributes really survived.
func TestCorpusChecksCatchDamage(t *testing.T) {
	sent := strings.Join([]string{"v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
		"a=ice-options:trickle",
		"m=audio 4000 RTP/SAVP 108 9", "b=TIAS:128000", "a=rtpmap:108 MP4A-LATM/90000", "a=rtpmap:9 G722/8000",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48",
		"a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host", "a=rtcp-mux", "a=sendrecv",
		"m=application 5070 TCP/BFCP *", "a=setup:actpass", "a=connection:new", "a=floorctrl:c-s", "a=confid:1",
		"a=floorid:2 mstrm:12", "a=userid:2", ""}, "\r\n")
	relayed := strings.NewReplacer("m=audio 4000", "m=audio 30000", "m=application 5070", "m=application 30002",
		"a=setup:actpass", "a=setup:passive", "a=ice-options:trickle\r\n", "",
		"a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host\r\n", "").Replace(sent)
	if errs := compareRelayed(sent, relayed, true); len(errs) != 0 {
		t.Fatalf("a faithful relay flagged: %q", errs)
	}
	tests := []struct{ name, old, new string }{
		{"a=crypto dropped", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48\r\n", ""},
		{"a=crypto key changed", "inline:WVNf", "inline:XVNf"},
		{"proto changed", "RTP/SAVP", "RTP/AVP"},
		{"payload format dropped", "RTP/SAVP 108 9", "RTP/SAVP 108"},
		{"rtpmap dropped", "a=rtpmap:9 G722/8000\r\n", ""},
		{"attributes reordered", "a=confid:1\r\na=floorid:2 mstrm:12", "a=floorid:2 mstrm:12\r\na=confid:1"},
		{"floorctrl dropped", "a=floorctrl:c-s\r\n", ""},
		{"direction changed", "a=sendrecv", "a=sendonly"},
		{"bandwidth dropped", "b=TIAS:128000\r\n", ""},
		{"port not relayed", "m=audio 30000", "m=audio 4000"},
		{"m-line rejected", "m=application 30002", "m=application 0"},
		{"TCP setup not passive", "a=setup:passive", "a=setup:active"},
		{"ICE leaked", "a=rtcp-mux", "a=ice-ufrag:abcd\r\na=rtcp-mux"},
		{"rtcp-mux dropped from an offer", "a=rtcp-mux\r\n", ""},
		{"m-line dropped", "m=application 30002 TCP/BFCP *", "x=gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Replace(relayed, tt.old, tt.new, 1)
			if got == relayed {
				t.Fatalf("mutation %q did not apply", tt.old)
			}
			if errs := compareRelayed(sent, got, true); len(errs) == 0 {
				t.Fatalf("damage not flagged:\n%s", got)
			}
		})
	}
}

// TestCorpusAnswers: answers keep the offer's m-line count and order, reject what the answerer
// lacks, and follow the offer/answer rules for a=setup, a=crypto and a=floorctrl.
func TestCorpusAnswers(t *testing.T) {
	b, err := os.ReadFile("testdata/corpus/cisco/boardpro_teams-vimt.txt")
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseCorpus(string(b))
	if err != nil {
		t.Fatal(err)
	}
	ans := answerBlocks(p.room.all(), p.service.all())
	var kinds []string
	for _, blk := range ans {
		kinds = append(kinds, fmt.Sprintf("%s/%d", mKind(blk), mPort(blk[0])))
	}
	want := []string{"audio/33000", "video:main/33002", "application:107/0", "video:slides/33004", "bfcp/33006"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("answer m-lines %q, want %q", kinds, want)
	}
	if !slices.Contains(ans[4], "a=floorctrl:s-only") {
		t.Fatalf("BFCP answer to c-s from an s-only server: %q", ans[4])
	}
	g, err := os.ReadFile("testdata/corpus/poly/g7500_zoom-crc.txt")
	if err != nil {
		t.Fatal(err)
	}
	if p, err = parseCorpus(string(g)); err != nil {
		t.Fatal(err)
	}
	ans = answerBlocks(p.service.all(), p.room.all()) // the room answers Zoom's offer
	crypto := 0
	for _, l := range ans[0] {
		if strings.HasPrefix(l, "a=crypto:") {
			crypto++
		}
	}
	if crypto != 1 || !slices.Contains(ans[4], "a=floorctrl:c-only") {
		t.Fatalf("room's answer: %d a=crypto in audio, BFCP %q", crypto, ans[4])
	}
	s, err := os.ReadFile("testdata/corpus/poly/studiox50_pexip.txt")
	if err != nil {
		t.Fatal(err)
	}
	if p, err = parseCorpus(string(s)); err != nil {
		t.Fatal(err)
	}
	ans = answerBlocks(p.room.all(), p.service.all())
	if !slices.Contains(ans[0], "a=setup:active") || slices.Contains(ans[0], "a=setup:actpass") {
		t.Fatalf("DTLS answer keeps actpass: %q", ans[0])
	}
}
