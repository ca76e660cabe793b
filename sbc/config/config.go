package config

import (
	"net/netip"
)

// Config is the whole node configuration. Every field documents its default; Default returns it.
type Config struct {
	Node      Node      `yaml:"node"`
	Log       Log       `yaml:"log"`
	SIP       SIP       `yaml:"sip"`
	Registrar Registrar `yaml:"registrar"`
	Calls     Calls     `yaml:"calls"`
	Media     Media     `yaml:"media"`
	TURN      TURN      `yaml:"turn"`
	Admin     Admin     `yaml:"admin"`
	Cluster   Cluster   `yaml:"cluster"`
	Guard     Guard     `yaml:"guard"`
	ACME      ACME      `yaml:"acme"`
	Rooms     []Room    `yaml:"rooms"`
	// Sinks send call records and security events out of the box (sinks.go). Default: none.
	Sinks []Sink `yaml:"sinks"`
}

// Node identifies this process.
type Node struct {
	// ID names the node in the cluster. Default: the ID recorded in data_dir by the first start,
	// else the host name (so a container whose host name changes keeps its identity).
	ID string `yaml:"id"`
	// DataDir holds the Raft log, snapshots, certificates and the admin socket. Default: ./data.
	DataDir string `yaml:"data_dir"`
	// DrainTimeout bounds how long SIGTERM waits for active calls before stopping. Default: 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `yaml:"level"`
	// Format is text or json. Default: text.
	Format string `yaml:"format"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// SIP configures the signalling edge.
type SIP struct {
	// Domain is the SIP domain rooms register in (sip:ROOM@DOMAIN) and the digest realm.
	// Default: none, so that nothing names the product: the cluster records one at its first
	// start (sip.advertise when it is a host name or IPv4 address, else a random token) and every
	// node uses it; a cluster whose state predates the recording keeps LegacyDomain, the
	// stored HA1 of its rooms depending on it. A configured domain always wins.
	Domain string `yaml:"domain"`
	// Listen lists the listeners. Default: [udp://0.0.0.0:5060, tcp://0.0.0.0:5060].
	// A tls:// listener needs TLS.Cert and TLS.Key.
	Listen []Listen `yaml:"listen"`
	// Advertise is the host put in Via and Contact when the listeners are behind 1:1 NAT or bound
	// to 0.0.0.0. Default: the listener IP, or the host's primary address for 0.0.0.0.
	Advertise string `yaml:"advertise"`
	// TLS is the certificate for tls:// listeners (TLS 1.2 or later only). Default: none.
	TLS TLS `yaml:"tls"`
	// MaxMessageSize is the largest SIP message accepted, and the largest sent, in bytes, on
	// every transport. Over UDP it is sent as one datagram however large (IP fragmentation, as
	// endpoints and SBCs do: a room behind NAT has only its UDP flow; RFC 3261 §18.1.1's switch
	// to TCP is not made). At most MaxMessageSizeLimit. Default: 65535.
	MaxMessageSize int `yaml:"max_message_size"`
	// ReadTimeout is how long a TCP/TLS peer may take to send a whole message once it started
	// (no slowloris). Default: 10s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// IdleTimeout closes a TCP/TLS connection that carried nothing, not even a CRLF keepalive,
	// for this long. Default: 10m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnsPerSource caps open TCP/TLS connections per source IP. Default: 32.
	MaxConnsPerSource int `yaml:"max_conns_per_source"`
	// MaxConnsPerPrefix caps open TCP/TLS connections per IPv6 /64 (the unit an IPv6 site or
	// attacker holds: one /64 has 2^64 source addresses). Default: 64.
	MaxConnsPerPrefix int `yaml:"max_conns_per_prefix"`
	// MaxConns caps open TCP/TLS connections of the node, all listeners together. Each open
	// connection holds a read buffer of up to 64 KB. Default: 4096.
	MaxConns int `yaml:"max_conns"`
	// UserAgent, when set, is sent as Server/User-Agent on our messages. Default: empty (none).
	UserAgent string `yaml:"user_agent"`
	// PassUserAgent relays the peers' User-Agent/Server headers to the other leg. Default: false.
	PassUserAgent bool `yaml:"pass_user_agent"`
}

// MaxMessageSizeLimit is the largest sip.max_message_size allowed (1 MiB).
const MaxMessageSizeLimit = 1 << 20

// Registrar configures registrations of room systems.
type Registrar struct {
	// MinExpires: shorter registrations get 423 Interval Too Brief. Default: 60s.
	MinExpires Duration `yaml:"min_expires"`
	// MaxExpires caps registrations. Default: 1h.
	MaxExpires Duration `yaml:"max_expires"`
	// DefaultExpires applies when the room asks for none. Default: 10m.
	DefaultExpires Duration `yaml:"default_expires"`
	// KeepaliveInterval: UDP bindings get an OPTIONS over their flow this often. Default: 25s.
	KeepaliveInterval Duration `yaml:"keepalive_interval"`
	// KeepaliveFailures: a binding whose keepalive fails this many times in a row is dropped.
	// Default: 2.
	KeepaliveFailures int `yaml:"keepalive_failures"`
	// Grace keeps a binding this long after its TCP/TLS flow closed. Default: 30s.
	Grace Duration `yaml:"grace"`
	// MaxContacts per room. Default: 5.
	MaxContacts int `yaml:"max_contacts"`
	// NonceTTL is how long a digest nonce is valid (after that: stale=true). Default: 5m.
	NonceTTL Duration `yaml:"nonce_ttl"`
	// Algorithms are the digest algorithms challenged, one WWW-Authenticate each, most preferred
	// first (RFC 8760): SHA-256, MD5. Default: [MD5], what every room system registers with.
	// Offering SHA-256 locks out clients that know only MD5: baresip 1.0 (libre 1.1) gives up on
	// a 401 with any challenge it does not know, whatever the order ("Function not
	// implemented"), and SIPp and many room systems answer only the first challenge. Clients that
	// pick SHA-256 get it (RFC 8760) when it is listed; SHA-256 answers are accepted either way.
	Algorithms []string `yaml:"algorithms"`
	// ChallengeTimeout: a configured room that got a 401 and sent no credentials within it is
	// reported (guard event "registration-failed", metric
	// portcullis_registration_failures_total{reason="challenge_unanswered"}), as are wrong
	// passwords and unsupported algorithms. Between 1s and 10m. Default: 32s (64*T1).
	ChallengeTimeout Duration `yaml:"challenge_timeout"`
}

// Calls configures the B2BUA.
type Calls struct {
	// RingTimeout: unanswered calls are cancelled after it (408). Default: 60s.
	RingTimeout Duration `yaml:"ring_timeout"`
	// MaxDuration ends calls that last longer. 0 disables. Default: 12h.
	MaxDuration Duration `yaml:"max_duration"`
	// SessionExpires is the RFC 4028 session interval asked for. Default: 30m.
	SessionExpires Duration `yaml:"session_expires"`
	// MinSE is the smallest session interval accepted (RFC 4028). Default: 90s.
	MinSE Duration `yaml:"min_se"`
	// RequireSDP refuses INVITEs without an SDP offer with 488. Default: false.
	RequireSDP bool `yaml:"require_sdp"`
	// Follow3xx follows redirects on outbound calls instead of failing. Default: false.
	Follow3xx bool `yaml:"follow_3xx"`
	// DNS is the ip:port of the DNS server used to resolve outbound targets (RFC 3263: NAPTR,
	// SRV, A/AAAA). Default: the first nameserver of /etc/resolv.conf.
	DNS string `yaml:"dns"`
	// Outbound lets registered rooms call SIP URIs outside the node (after digest
	// authentication). Default: true.
	Outbound *bool `yaml:"outbound"`
}

// OutboundOn reports whether rooms may call out.
func (c Calls) OutboundOn() bool { return c.Outbound == nil || *c.Outbound }

// Media configures the RTP relay.
type Media struct {
	// Bind is the address relay sockets bind to. Default: 0.0.0.0.
	Bind netip.Addr `yaml:"bind"`
	// Advertise is the address written into SDP (public address behind 1:1 NAT).
	// Default: Bind, or the host's primary address when Bind is 0.0.0.0.
	Advertise netip.Addr `yaml:"advertise"`
	// Advertise6 is the IPv6 address written into SDP for legs whose peer is on IPv6, when
	// Advertise is IPv4 (a dual-stack relay: bind "::"). Default: none, every leg gets
	// Advertise.
	Advertise6 netip.Addr `yaml:"advertise6"`
	// Ports is the RTP/RTCP port range (pairs: even RTP, odd RTCP). Default: 20000-39999.
	Ports PortRange `yaml:"ports"`
	// Drain keeps a released port bound and discarding before reuse. Default: 5s.
	Drain Duration `yaml:"drain"`
	// LatchWindow is how long a stream learns its peer's source address. Default: 2s.
	LatchWindow Duration `yaml:"latch_window"`
	// Timeout ends a call with no RTP in either direction for this long. Default: 60s.
	Timeout Duration `yaml:"timeout"`
	// HoldTimeout replaces Timeout while a call is on hold. Default: 2h.
	HoldTimeout Duration `yaml:"hold_timeout"`
	// StripICE removes ICE attributes toward endpoints (media is anchored anyway). Default: true.
	StripICE *bool `yaml:"strip_ice"`
	// MaxStreams is the most relayed m-lines one SDP may have; an SDP with more, or with more
	// than 4x as many m-lines at all, is refused with 488 before any port is taken. Default: 8.
	MaxStreams int `yaml:"max_streams"`
	// MaxUnansweredPorts is the most relay ports one caller source may hold in calls not
	// answered yet (a stream holds 4); a new call past it is refused with 503 and a guard
	// event (rule media-ports). Cluster peers and guard.allow sources are exempt. Default: 192.
	MaxUnansweredPorts int `yaml:"max_unanswered_ports"`
	// AllowPeers lists networks the relay may send media to (and latch from) although the
	// peer deny list refuses them: loopback, RFC 1918, CGNAT, link-local, multicast, the
	// node's own addresses (the list TURN uses). Rooms on a private LAN need their network
	// here. Default: none.
	AllowPeers PrefixList `yaml:"allow_peers"`
	// FastPath is the kernel media path: "auto" forwards latched RTP with an eBPF program at
	// TC ingress when the node has CAP_BPF and CAP_NET_ADMIN and the kernel (6.6+, TCX)
	// allows it, else media stays in userspace (said at start and in /metrics as
	// portcullis_media_fastpath); "off" never tries. Default: auto (granting the two
	// capabilities is what turns it on).
	FastPath string `yaml:"fastpath"`
}

// FastPathOn reports whether media.fastpath asks for the kernel path.
func (m Media) FastPathOn() bool { return m.FastPath == "auto" }

// TURN configures the TURN server for ICE endpoints.
type TURN struct {
	// Listen lists TURN listeners (udp://, tcp://, tls://). Empty disables TURN.
	// Default: [udp://0.0.0.0:3478].
	Listen []Listen `yaml:"listen"`
	// TLS is the certificate for a tls:// TURN listener.
	TLS TLS `yaml:"tls"`
	// Realm of TURN long-term credentials. Default: sip.domain.
	Realm string `yaml:"realm"`
	// Secret is the shared secret of time-limited TURN REST credentials (coturn
	// use-auth-secret): username "<expiry-unix>:<user>", password
	// base64(HMAC-SHA1(secret, username)). Default: a random secret generated once in
	// node.data_dir/turn.secret (give it to whatever hands out credentials).
	Secret string `yaml:"secret"`
	// SIPCredentials makes rooms' SIP passwords (their stored HA1) TURN credentials too: legacy
	// setups only, since a TURN Allocate is then one more place to guess a room's password
	// (failures count toward the same bans and room locks as SIP). Needs realm = sip.domain.
	// Default: false.
	SIPCredentials bool `yaml:"sip_credentials"`
	// UnauthRate is requests per second without credentials allowed per source (IPv6: per
	// /64); TURN answers them with more bytes than they carry. Over it they are dropped and
	// counted. -1 turns the limit off. Default: 10.
	UnauthRate float64 `yaml:"unauth_rate"`
	// UnauthBurst is the burst allowed above UnauthRate. Default: 20.
	UnauthBurst int `yaml:"unauth_burst"`
	// Quota is the most live allocations per user. Default: 10.
	// Relay ports come from media.ports, shared with RTP.
	Quota int `yaml:"quota"`
	// AllowPeers lists peer networks TURN may relay to even though they are private/loopback.
	// Default: none (no relaying into loopback, private, link-local or our own addresses).
	AllowPeers PrefixList `yaml:"allow_peers"`
}

// Admin configures the HTTP API, metrics and dashboard.
type Admin struct {
	// Listen is the API address. Default: 127.0.0.1:8443. A non-loopback address needs TLS.
	Listen string `yaml:"listen"`
	// TLS serves the API over HTTPS. Default: none (plain HTTP, loopback only).
	TLS TLS `yaml:"tls"`
	// AllowedHosts are Host header names accepted besides loopback addresses (DNS rebinding
	// protection). Default: none.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Token, when set, is registered as an admin token at start (prefer PORTCULLIS_ADMIN_TOKEN
	// in the environment). Default: none. There is never a default token.
	Token string `yaml:"token"`
}

// Cluster configures the Raft node. A node without Join forms (or restarts) its own cluster.
type Cluster struct {
	// Bind is the Raft/cluster-RPC address. Default: 127.0.0.1:7000.
	Bind string `yaml:"bind"`
	// Advertise is the address other nodes dial. Default: Bind.
	Advertise string `yaml:"advertise"`
	// Join lists cluster addresses to join on first start. Default: none (bootstrap alone).
	Join []string `yaml:"join"`
	// JoinToken authenticates a first join (from `portcullis cluster join-token`).
	JoinToken string `yaml:"join_token"`
	// CA, Cert, Key: cluster mTLS material. Default: generated in data_dir on first start.
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// NodeLostAfter: a node the leader cannot reach for this long is lost; the answered calls
	// it bridged alone are adopted by the surviving nodes (each leg gets a re-INVITE toward the
	// survivor's relay; the media gap is about this time), the others are ended (record "node
	// lost"), their rooms free again, and the room legs other nodes held for it get a BYE.
	// Default: 3s; at least 300ms.
	NodeLostAfter Duration `yaml:"node_lost_after"`
	// HeartbeatTimeout: a follower that has not heard from the leader for this long (a random
	// time between it and twice it) starts an election; a leader failure costs about that plus
	// one election. Tuned for a LAN. Default: 500ms; 20ms..10s.
	HeartbeatTimeout Duration `yaml:"heartbeat_timeout"`
	// ElectionTimeout: a candidate without a majority for this long tries again. At least
	// HeartbeatTimeout. Default: 500ms.
	ElectionTimeout Duration `yaml:"election_timeout"`
	// LeaderLeaseTimeout: a leader that has not reached a majority for this long steps down (a
	// cut-off leader stops accepting writes). At most HeartbeatTimeout. Default: 250ms.
	LeaderLeaseTimeout Duration `yaml:"leader_lease_timeout"`
}

// Guard configures caller filtering.
type Guard struct {
	// Allow lists trusted callers/sources: CIDRs, IPs, domains, user@domain patterns.
	// Allow-listed source CIDRs skip flood limits. Default: none.
	Allow []string `yaml:"allow"`
	// Deny lists refused callers/sources (CIDRs are dropped before parsing). Default: none.
	Deny []string `yaml:"deny"`
	// ScannerUserAgents are case-insensitive User-Agent substrings of SIP scanners.
	// Default: a built-in list (friendly-scanner, sipvicious, sipcli, VaxSIPUserAgent, ...).
	ScannerUserAgents []string `yaml:"scanner_user_agents"`
	// BanTime is the first ban's length; repeat offenders get longer ones. Default: 1h.
	BanTime Duration `yaml:"ban_time"`
	// BanMax caps a ban's length. Default: 7 days (168h).
	BanMax Duration `yaml:"ban_max"`
	// RequestRate is requests per second allowed per untrusted source (IPv6: per /64), times
	// 1 + the number of rooms registered from it. Default: 20.
	RequestRate float64 `yaml:"request_rate"`
	// RequestBurst is the burst allowed above RequestRate. Default: 40.
	RequestBurst int `yaml:"request_burst"`
	// DatagramRate is UDP datagrams (and TCP/TLS messages) per second allowed per untrusted
	// source (IPv6: per /64) before any parsing: requests, responses and retransmissions alike;
	// a stream connection that goes over is closed. Addresses that rooms registered from,
	// allow-listed sources and other cluster nodes are exempt; a far end gets the rate once per
	// active call leg it has through the cluster. -1 turns it off. Default: 400.
	DatagramRate float64 `yaml:"datagram_rate"`
	// DatagramBurst is the burst allowed above DatagramRate. Default: 800.
	DatagramBurst int `yaml:"datagram_burst"`
	// AuthFailures failed digest or TURN logins within AuthWindow ban a source (an address
	// rooms registered from too; the rooms' registered flows keep working). Default: 10 in 1m.
	AuthFailures int      `yaml:"auth_failures"`
	AuthWindow   Duration `yaml:"auth_window"`
	// RoomAuthFailures failed logins for one room within RoomAuthWindow, from any sources,
	// lock the room's digest for RoomLockTime, doubled for each lock within a day up to
	// RoomLockMax: logins for it are refused (rule room-locked) except over the room's
	// registered flows. Default: 20 in 5m, 5m, 1h.
	RoomAuthFailures int      `yaml:"room_auth_failures"`
	RoomAuthWindow   Duration `yaml:"room_auth_window"`
	RoomLockTime     Duration `yaml:"room_lock_time"`
	RoomLockMax      Duration `yaml:"room_lock_max"`
	// UnknownUsers different unknown users tried within UnknownWindow ban a source
	// (extension enumeration). Default: 5 in 1m.
	UnknownUsers  int      `yaml:"unknown_users"`
	UnknownWindow Duration `yaml:"unknown_window"`
	// Stealth drops refused scans silently instead of answering, and a stranger's calls to a room
	// it may not call (allowlist, dnd) or that is not registered, as calls to a name that is no
	// room are. Default: true.
	Stealth *bool `yaml:"stealth"`
	// Feeds are threat lists (plain text or JSON) loaded from files or http(s) URLs.
	Feeds []Feed `yaml:"feeds"`
	// Events is the size of the recent-events buffer. Default: 10000.
	Events int `yaml:"events"`
	// IPDialing lets callers reach a room as sip:ROOM@<node IP> (video systems often dial by
	// IP). INVITEs to the bare IP or to users that are not rooms stay ghost calls. Default: true.
	IPDialing *bool `yaml:"ip_dialing"`
}

// IPDialingOn reports whether rooms may be dialled at the node's IP address.
func (g Guard) IPDialingOn() bool { return g.IPDialing == nil || *g.IPDialing }

// Feed is one threat list.
type Feed struct {
	// URL is a file path or an http(s) URL.
	URL string `yaml:"url"`
	// Interval between reloads. Default: 1h.
	Interval Duration `yaml:"interval"`
}

// Room is a room system declared in the config. Rooms can also be managed through the API.
type Room struct {
	// Name is the SIP user: the room registers as sip:NAME@DOMAIN. Required.
	Name string `yaml:"name"`
	// Password in plain text, or HA1MD5 / HA1SHA256 (hex of H(name:domain:password)). One is required.
	Password  string `yaml:"password"`
	HA1MD5    string `yaml:"ha1_md5"`
	HA1SHA256 string `yaml:"ha1_sha256"`
	// Inbound is open, allowlist or dnd. Default: open.
	Inbound string `yaml:"inbound"`
	// Allow lists callers for allowlist mode and drop-in exceptions (user@domain globs,
	// *@domain, domain, IP or CIDR).
	Allow []string `yaml:"allow"`
	// DNDCode is the status answered in dnd mode; 0 drops silently. Default: 486.
	DNDCode *int `yaml:"dnd_code"`
	// AutoAnswer: block strips auto-answer/intercom headers from callers. Default: block.
	AutoAnswer string `yaml:"auto_answer"`
	// DropIn: deny refuses a second inbound call while the room is in a call unless the caller is
	// allow-listed. Default: deny.
	DropIn string `yaml:"drop_in"`
}

// Default returns the built-in configuration: a single node that needs nothing else.
func Default() Config {
	return Config{
		Node: Node{DataDir: "./data", DrainTimeout: Duration(30e9)},
		Log:  Log{Level: "info", Format: "text"},
		SIP: SIP{
			Listen: []Listen{
				{Transport: "udp", Addr: netip.MustParseAddrPort("0.0.0.0:5060")},
				{Transport: "tcp", Addr: netip.MustParseAddrPort("0.0.0.0:5060")},
			},
			MaxMessageSize: 65535, ReadTimeout: Duration(10e9), IdleTimeout: Duration(600e9),
			MaxConnsPerSource: 32, MaxConnsPerPrefix: 64, MaxConns: 4096,
		},
		Registrar: Registrar{
			MinExpires: Duration(60e9), MaxExpires: Duration(3600e9), DefaultExpires: Duration(600e9),
			KeepaliveInterval: Duration(25e9), KeepaliveFailures: 2, Grace: Duration(30e9),
			MaxContacts: 5, NonceTTL: Duration(300e9), Algorithms: []string{"MD5"},
			ChallengeTimeout: Duration(32e9),
		},
		Calls: Calls{
			RingTimeout: Duration(60e9), MaxDuration: Duration(12 * 3600e9),
			SessionExpires: Duration(1800e9), MinSE: Duration(90e9),
		},
		Media: Media{
			Bind: netip.IPv4Unspecified(), Ports: PortRange{Min: 20000, Max: 39999},
			Drain: Duration(5e9), LatchWindow: Duration(2e9), Timeout: Duration(60e9),
			HoldTimeout: Duration(2 * 3600e9), MaxStreams: 8, MaxUnansweredPorts: 192, FastPath: "auto",
		},
		TURN: TURN{
			Listen: []Listen{{Transport: "udp", Addr: netip.MustParseAddrPort("0.0.0.0:3478")}},
			Quota:  10, UnauthRate: 10, UnauthBurst: 20,
		},
		Admin: Admin{Listen: "127.0.0.1:8443"},
		Cluster: Cluster{Bind: "127.0.0.1:7000", NodeLostAfter: Duration(3e9), HeartbeatTimeout: Duration(500e6),
			ElectionTimeout: Duration(500e6), LeaderLeaseTimeout: Duration(250e6)},
		ACME: ACME{Challenge: "tls-alpn-01"},
		Guard: Guard{
			BanTime: Duration(3600e9), BanMax: Duration(168 * 3600e9), RequestRate: 20, RequestBurst: 40,
			DatagramRate: 400, DatagramBurst: 800,
			AuthFailures: 10, AuthWindow: Duration(60e9), UnknownUsers: 5, UnknownWindow: Duration(60e9),
			RoomAuthFailures: 20, RoomAuthWindow: Duration(300e9), RoomLockTime: Duration(300e9), RoomLockMax: Duration(3600e9),
			Events: 10000,
		},
	}
}

// StripICE reports the effective media.strip_ice.
func (m Media) StripICEOn() bool { return m.StripICE == nil || *m.StripICE }

// StealthOn reports the effective guard.stealth.
func (g Guard) StealthOn() bool { return g.Stealth == nil || *g.Stealth }
