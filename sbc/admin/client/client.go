// Package client is a typed client of the admin API (sbc/admin): it sends the bearer token,
// decodes answers, and turns error answers into *Error, which carries the API's own error body
// (admin.APIError) and the HTTP status. `portcullis ctl` and `portcullis token` use it, and so
// can tests and tools.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

// ErrBadURL means the API address is not an http(s)://HOST[:PORT] URL.
var ErrBadURL = errors.New("admin API URL must be http(s)://HOST:PORT")

// Error is an error answer of the API. errors.As finds the API's *admin.APIError in it too.
type Error struct {
	admin.APIError
}

// Error renders the status, the API's error code and its message ("404 not_found: ...").
func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the API's error.
func (e *Error) Unwrap() error { return &e.APIError }

// ConnError means the API could not be reached (no answer at all).
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// Config says where the API is and how to reach it.
type Config struct {
	// API is the base URL: http(s)://HOST:PORT (a bare HOST:PORT means http); requests go to
	// API + Prefix + path.
	API    string
	Prefix string // default "/api/v1"
	Token  string // sent as a bearer token when set
	CAFile string // PEM file of the CA that signed the API's certificate (default: system roots)
	// Dial replaces the TCP dial (the node's token socket is a unix socket).
	Dial func(ctx context.Context) (net.Conn, error)
}

// Client talks to one admin API. It is safe for concurrent use.
type Client struct {
	base, token string
	http        *http.Client
}

// New returns a client for cfg. A bad URL is ErrBadURL.
func New(cfg Config) (*Client, error) {
	api := cfg.API
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q", ErrBadURL, cfg.API)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "/api/v1"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the API is local or on a management network, never through a proxy
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no certificate found", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if cfg.Dial != nil {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return cfg.Dial(ctx) }
	}
	return &Client{base: strings.TrimSuffix(api, "/") + prefix, token: cfg.Token, http: &http.Client{Transport: tr}}, nil
}

// Do sends a request (body, when not nil, as JSON) and returns the body of a 2xx answer; other
// answers are *Error, and no answer at all is *ConnError.
func (c *Client) Do(ctx context.Context, method, path string, body any) ([]byte, error) {
	res, err := c.request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 != 2 {
		return nil, decodeError(res.StatusCode, b)
	}
	return b, nil
}

// Get decodes a GET answer into v (when not nil) and returns the raw body.
func (c *Client) Get(ctx context.Context, path string, v any) ([]byte, error) {
	b, err := c.Do(ctx, http.MethodGet, path, nil)
	if err == nil && v != nil {
		err = json.Unmarshal(b, v)
	}
	return b, err
}

// Send makes a write and decodes the answer into v (when not nil and there is one).
func (c *Client) Send(ctx context.Context, method, path string, body, v any) ([]byte, error) {
	b, err := c.Do(ctx, method, path, body)
	if err == nil && v != nil && len(b) > 0 {
		err = json.Unmarshal(b, v)
	}
	return b, err
}

// GetAny is Get that decodes the JSON body of any status (health answers 503 with a report).
func (c *Client) GetAny(ctx context.Context, path string, v any) ([]byte, error) {
	res, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	return b, err
}

// Stream opens a streaming GET (server-sent events); the caller reads and closes the body of
// the 200 answer. Other answers are *Error.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	res, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
		return nil, decodeError(res.StatusCode, b)
	}
	return res.Body, nil
}

func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, &ConnError{Err: err}
	}
	return res, nil
}

// decodeError reads the API's error body; an answer that is not one (a proxy's page) keeps the
// status text and the body as the message.
func decodeError(status int, b []byte) *Error {
	e := &Error{admin.APIError{Status: status}}
	if json.Unmarshal(b, &e.APIError) != nil || e.Code == "" {
		e.Code, e.Message = http.StatusText(status), strings.TrimSpace(string(b))
	}
	e.Status = status
	return e
}
