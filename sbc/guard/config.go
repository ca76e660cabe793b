package guard

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// Config configures a Guard. Zero fields take the documented defaults (those of
// sbc/config.Default), so Config{Domain: "example.com"} is a working guard.
type Config struct {
	// Domain is our SIP domain: INVITEs for it are routed to rooms. Required.
	Domain string
	// Aliases are further host names that are ours (the R-URI may carry any of them).
	Aliases []string
	// NodeAddrs are our own IPs: an INVITE to sip:IP is a ghost call, and they are never banned.
	NodeAddrs []netip.Addr
	// NodeID is written into the bans this guard makes.
	NodeID string
	// AllowIPDialing accepts INVITEs to room@one-of-NodeAddrs when the user is a known room
	// (video systems that dial by IP). Default false: any INVITE to an IP literal is a ghost call.
	AllowIPDialing bool

	// Allow lists trusted sources and callers (see Matcher). Sources matched by an IP/CIDR entry
	// get normal service without any check; caller URI entries exempt from URI deny entries.
	// Merged with the cluster's state.Lists.Allow. Default: none.
	Allow []string
	// Deny lists refused sources and callers (see Matcher), merged with state.Lists.Deny.
	Deny []string
	// ScannerUserAgents are case-insensitive substrings of scanners' User-Agents (also matched
	// against the From display name). nil means DefaultScannerUserAgents; an empty non-nil
	// slice disables the rule. Merged with state.Lists.ScannerUserAgents.
	ScannerUserAgents []string

	// BanTime is the first ban's length; each further ban of the same source doubles it, up to
	// BanMax. Defaults: 1h and 168h.
	BanTime, BanMax time.Duration
	// RequestRate (per second) and RequestBurst are the token bucket of every untrusted source
	// (IPv4 address or IPv6 /64), multiplied by 1 + the number of rooms registered from it (the
	// most at once within siteMemory: a site's rooms re-register together after an outage).
	// Defaults: 20 and 40.
	RequestRate  float64
	RequestBurst int
	// DatagramRate (per second) and DatagramBurst meter every UDP datagram of an untrusted
	// source before it is parsed (Datagram): requests, responses and retransmissions alike.
	// Defaults: 400 and 800; a negative rate turns the meter off.
	DatagramRate  float64
	DatagramBurst int
	// Trusted reports sources that the datagram meter never drops besides allow-listed ones,
	// our own and those rooms registered from (the node passes the other cluster nodes). It
	// runs only for a source over its limit. Optional.
	Trusted func(src netip.AddrPort) bool
	// FloodRefusals rate-limited requests (or datagrams over the meter) within FloodWindow ban
	// the source (rule flood).
	// Defaults: 2×RequestBurst in 10s; negative disables flood bans.
	FloodRefusals int
	FloodWindow   time.Duration
	// AuthFailures failed digest logins within AuthWindow ban the source (brute force).
	// Defaults: 10 in 1m.
	AuthFailures int
	AuthWindow   time.Duration
	// RoomAuthFailures failed logins for one room within RoomAuthWindow, from any sources,
	// lock the room's digest for RoomLockTime (doubled per lock within a day, at most
	// RoomLockMax): every login for it is refused (rule room-locked) except over the room's
	// registered flows. Defaults: 20 in 5m, 5m, 1h.
	RoomAuthFailures int
	RoomAuthWindow   time.Duration
	RoomLockTime     time.Duration
	RoomLockMax      time.Duration
	// UnknownUsers different unknown users tried within UnknownWindow ban the source
	// (extension enumeration, svwar). Defaults: 5 in 1m.
	UnknownUsers  int
	UnknownWindow time.Duration
	// Stealth makes refusals of scan, ghost, flood and source rules silent (Drop) instead of
	// answering 403 (404 for unknown users). Protocol errors (483, 400) and room policy are
	// always answered.
	Stealth bool

	// Feeds are threat lists loaded by Run. Sources they list are refused (rule threat-feed).
	Feeds []Feed
	// FeedClient fetches http(s) feeds. Default: a client with a 30s timeout.
	FeedClient *http.Client
	// OnFeedsChanged is called (from Run's goroutines) after the union of feeds changed, e.g. to
	// push FeedPrefixes into the edge's pre-parse blocklist. Optional.
	OnFeedsChanged func()
	// OnBan is called when this node bans a source, before the cluster has applied the ban, so
	// the edge can drop it before parsing at once. It must not block. Optional.
	OnBan func(p netip.Prefix, until time.Time)

	// Events is the size of the ring of recent refusals. Default: 10000.
	Events int
	// MaxSources bounds the per-source table (rate buckets, failure counters). When full, new
	// sources share one bucket per shard until idle ones are pruned. Default: 200000.
	MaxSources int
	// IdleTimeout: per-source state unused this long is pruned by Run. Default: 10m (at least
	// the longest window).
	IdleTimeout time.Duration

	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives refusal logs (rate-limited: the first per source and rule per minute),
	// bans and feed problems. Default: discard.
	Logger *slog.Logger
}

// Feed is one threat list: a file path (or file:// URL) or an http(s) URL, holding plain text
// (one IP or CIDR per line, '#' or ';' comments) or a JSON array of strings or {"ip": ...}
// objects.
type Feed struct {
	URL      string
	Interval time.Duration // between reloads; default 1h
}

func (c *Config) setDefaults() error {
	if c.Domain == "" {
		return fmt.Errorf("%w: domain is required", ErrConfig)
	}
	d := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	d(&c.BanTime, time.Hour)
	d(&c.BanMax, 168*time.Hour)
	if c.BanMax < c.BanTime {
		return fmt.Errorf("%w: ban max %s is shorter than ban time %s", ErrConfig, c.BanMax, c.BanTime)
	}
	if c.RequestRate <= 0 {
		c.RequestRate = 20
	}
	if c.RequestBurst <= 0 {
		c.RequestBurst = 40
	}
	if c.DatagramRate == 0 {
		c.DatagramRate = 400
	}
	if c.DatagramBurst <= 0 {
		c.DatagramBurst = 2 * max(int(c.DatagramRate), 1)
	}
	if c.FloodRefusals == 0 {
		c.FloodRefusals = 2 * c.RequestBurst
	}
	d(&c.FloodWindow, 10*time.Second)
	if c.AuthFailures <= 0 {
		c.AuthFailures = 10
	}
	d(&c.AuthWindow, time.Minute)
	if c.RoomAuthFailures <= 0 {
		c.RoomAuthFailures = 20
	}
	d(&c.RoomAuthWindow, 5*time.Minute)
	d(&c.RoomLockTime, 5*time.Minute)
	d(&c.RoomLockMax, time.Hour)
	c.RoomLockMax = max(c.RoomLockMax, c.RoomLockTime)
	if c.UnknownUsers <= 0 {
		c.UnknownUsers = 5
	}
	d(&c.UnknownWindow, time.Minute)
	if c.Events <= 0 {
		c.Events = 10000
	}
	if c.MaxSources <= 0 {
		c.MaxSources = 200000
	}
	d(&c.IdleTimeout, 10*time.Minute)
	c.IdleTimeout = max(c.IdleTimeout, c.AuthWindow, c.UnknownWindow, c.FloodWindow,
		time.Duration(float64(c.RequestBurst)/c.RequestRate*float64(time.Second)))
	for i := range c.Feeds {
		if c.Feeds[i].URL == "" {
			return fmt.Errorf("%w: feed %d has no url", ErrConfig, i)
		}
		d(&c.Feeds[i].Interval, time.Hour)
	}
	if c.FeedClient == nil {
		c.FeedClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ScannerUserAgents == nil {
		c.ScannerUserAgents = DefaultScannerUserAgents
	}
	return nil
}
