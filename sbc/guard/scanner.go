package guard

import (
	"fmt"
	"strings"
)

// DefaultScannerUserAgents are case-insensitive User-Agent substrings of SIP attack tools, used
// when Config.ScannerUserAgents is nil. They name tools, not products: User-Agents that real
// equipment also sends (Cisco-SIPGateway, Asterisk PBX, eyeBeam, MizuPhone, PortSIP, Zoiper,
// sipsak, SIPp) are deliberately absent, since scanners imitate them and blocking them would
// refuse real callers. Add such strings to guard.scanner_user_agents where you know they are
// never legitimate for you.
var DefaultScannerUserAgents = []string{
	"friendly-scanner", // SIPVicious 0.2 svmap/svwar/svcrack
	"friendly-request", // SIPVicious variants
	"sipvicious",       // SIPVicious 0.3 (also the From display name)
	"sipcli",           // sipcli brute forcer
	"VaxSIPUserAgent",  // VaxVoIP SDK based scanners
	"VaxIPUserAgent",   // same, older builds
	"sundayddr",        // sundayddr worm/scanner
	"iWar",             // iWar war dialer
	"sip-scan",         // sip-scan
	"SIPScan",          // SIPScan and sipscan
	"pplsip",           // pplsip scanner
	"smap",             // smap SIP scanner
	"siparmyknife",     // SIP Army Knife fuzzer
	"SIVuS",            // SiVuS scanner
	"sipptk",           // SIPPTS (pepelux) default User-Agent
	"sippts",           // SIPPTS
	"voiphopper",       // VoIP Hopper
	"Nmap NSE",         // nmap sip-* scripts
	"fgfdhgfxjfhyjhkj", // garbage User-Agent of a long-running scan campaign
}

// Limits of a compiled scanner list: they bound the automaton's table.
const (
	maxUAPattern      = 128
	maxUAPatternBytes = 16 << 10
)

// uaMatcher finds any of a set of substrings in a string, ignoring ASCII case, in one pass
// (Aho–Corasick as a dense DFA over byte classes). match does not allocate.
type uaMatcher struct {
	class    [256]uint16 // byte -> class; 0: a byte no pattern contains
	stride   int         // number of classes
	next     []uint32    // state*stride + class -> state
	hit      []int32     // state -> index+1 of a pattern ending at this state, 0 none
	patterns []string    // as configured, for reasons
}

// compileUA builds the matcher. Empty and over-long patterns are reported and left out.
func compileUA(patterns []string) (*uaMatcher, error) {
	m := &uaMatcher{}
	lows, errs := m.addPatterns(patterns)
	m.assignClasses(lows)
	children, hit := m.trie(lows)
	m.link(children, hit)
	if len(errs) > 0 {
		return m, fmt.Errorf("%w: scanner user agents: %s", ErrPattern, strings.Join(errs, "; "))
	}
	return m, nil
}

// addPatterns keeps the usable patterns (trimmed, bounded, without case-insensitive repeats)
// in m.patterns and returns their lower-case forms, and what was left out and why.
func (m *uaMatcher) addPatterns(patterns []string) (lows, errs []string) {
	seen := map[string]bool{}
	total := 0
	for _, p := range patterns {
		t := strings.TrimSpace(p)
		switch {
		case t == "":
			errs = append(errs, "empty entry")
			continue
		case len(t) > maxUAPattern:
			errs = append(errs, fmt.Sprintf("%.20q…: longer than %d bytes", t, maxUAPattern))
			continue
		case total+len(t) > maxUAPatternBytes:
			errs = append(errs, fmt.Sprintf("%q: list longer than %d bytes", t, maxUAPatternBytes))
			continue
		}
		l := asciiLower(t)
		if seen[l] {
			continue
		}
		seen[l] = true
		total += len(l)
		lows = append(lows, l)
		m.patterns = append(m.patterns, t)
	}
	return lows, errs
}

// assignClasses gives every byte some pattern contains its own class; upper-case letters share
// the class of their lower-case form. It sets the stride of the transition table.
func (m *uaMatcher) assignClasses(lows []string) {
	n := uint16(1)
	for _, l := range lows {
		for i := 0; i < len(l); i++ {
			if m.class[l[i]] == 0 {
				m.class[l[i]] = n
				n++
			}
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		m.class[c] = m.class[c+('a'-'A')]
	}
	m.stride = int(n)
}

// trie builds the patterns' trie: children[state][class] (-1: none) and, per state, the
// 1-based index of the pattern that ends there (0: none).
func (m *uaMatcher) trie(lows []string) (children [][]int32, hit []int32) {
	children = [][]int32{newRow(m.stride)}
	hit = []int32{0}
	for pi, l := range lows {
		st := int32(0)
		for i := 0; i < len(l); i++ {
			c := m.class[l[i]]
			if children[st][c] < 0 {
				children[st][c] = int32(len(children))
				children = append(children, newRow(m.stride))
				hit = append(hit, 0)
			}
			st = children[st][c]
		}
		if hit[st] == 0 {
			hit[st] = int32(pi + 1)
		}
	}
	return children, hit
}

// link computes the failure links breadth first, folded into the full transition table m.next,
// and propagates hits along them into m.hit.
func (m *uaMatcher) link(children [][]int32, hit []int32) {
	states := len(children)
	m.next = make([]uint32, states*m.stride)
	fail := make([]int32, states)
	queue := make([]int32, 0, states)
	for c := 0; c < m.stride; c++ {
		if v := children[0][c]; v > 0 {
			m.next[c] = uint32(v)
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for c := 0; c < m.stride; c++ {
			v := children[u][c]
			if v < 0 {
				m.next[int(u)*m.stride+c] = m.next[int(fail[u])*m.stride+c]
				continue
			}
			f := int32(m.next[int(fail[u])*m.stride+c])
			fail[v] = f
			if hit[v] == 0 {
				hit[v] = hit[f]
			}
			m.next[int(u)*m.stride+c] = uint32(v)
			queue = append(queue, v)
		}
	}
	m.hit = hit
}

func newRow(n int) []int32 {
	r := make([]int32, n)
	for i := range r {
		r[i] = -1
	}
	return r
}

// match returns the configured pattern found in s, if any.
func (m *uaMatcher) match(s string) (string, bool) {
	if m == nil || len(m.patterns) == 0 {
		return "", false
	}
	st := uint32(0)
	for i := 0; i < len(s); i++ {
		st = m.next[int(st)*m.stride+int(m.class[s[i]])]
		if h := m.hit[st]; h != 0 {
			return m.patterns[h-1], true
		}
	}
	return "", false
}

// asciiLower lowercases ASCII letters only (User-Agents are ASCII in practice; other bytes must
// match exactly).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}
