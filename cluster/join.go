package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// A join token lets a new node obtain its certificate from the CA holder (the node that ran
// Init) and join:
//
//	pcj1_<base64url(JSON {"addrs": [CA holder's address], "ca": SHA-256 of the CA cert, "secret": …})>
//
// The CA holder keeps only SHA-256(secret) and the expiry in DataDir/tls/join-tokens.json. A
// token can be used by several nodes until it expires. The joiner dials the address with TLS
// (join ALPN, no client certificate), accepts the server only if its chain holds the pinned CA,
// proves the secret, sends a CSR and gets back its certificate and the CA. It then starts Raft
// and asks the leader (over mutual TLS now) to add it as a voter.
const tokenPrefix = "pcj1_"

// DefaultTokenTTL is the lifetime of a join token when none is given.
const DefaultTokenTTL = time.Hour

type joinToken struct {
	Addrs  []string `json:"addrs"`
	CA     string   `json:"ca"`
	Secret string   `json:"secret"`
}

type storedToken struct {
	Hash    string    `json:"hash"` // hex SHA-256 of the secret
	Expires time.Time `json:"expires"`
}

var tokensMu sync.Mutex // serialises token file updates within a process

// NewJoinToken creates a join token in dataDir, which must be the CA holder's (it has
// tls/ca.key). addr is the address joiners dial (the CA holder's cluster address; empty: the
// advertise address recorded in the data dir). ttl <= 0 means DefaultTokenTTL.
func NewJoinToken(dataDir, addr string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	if _, err := os.Stat(tlsPath(dataDir, caKeyFile)); err != nil {
		return "", errf(ErrTLS, "%s has no cluster CA key: make join tokens on the node that ran init", dataDir)
	}
	ca, err := readCert(tlsPath(dataDir, caCertFile))
	if err != nil {
		return "", err
	}
	if addr == "" {
		ni, err := readInfo(dataDir)
		if err != nil || ni.Advertise == "" {
			return "", errf(ErrConfig, "no address recorded in %s: pass the node's cluster address", dataDir)
		}
		addr = ni.Advertise
	}
	if err := checkAdvertise(addr); err != nil {
		return "", err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	tokensMu.Lock()
	defer tokensMu.Unlock()
	toks := readTokens(dataDir)
	now := time.Now()
	toks = slicesDeleteExpired(toks, now)
	toks = append(toks, storedToken{Hash: hashSecret(secret), Expires: now.Add(ttl)})
	b, _ := json.MarshalIndent(toks, "", "  ")
	if err := writeFileAtomic(tlsPath(dataDir, tokensFile), b, 0o600); err != nil {
		return "", err
	}
	tb, _ := json.Marshal(joinToken{Addrs: []string{addr}, CA: Fingerprint(ca),
		Secret: base64.RawURLEncoding.EncodeToString(secret)})
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(tb), nil
}

// JoinToken creates a join token for this node (which must hold the cluster CA key).
func (n *Node) JoinToken(ttl time.Duration) (string, error) {
	return NewJoinToken(n.cfg.DataDir, n.advertise, ttl)
}

func hashSecret(secret []byte) string {
	s := sha256.Sum256(secret)
	return hex.EncodeToString(s[:])
}

func readTokens(dataDir string) []storedToken {
	var toks []storedToken
	if b, err := os.ReadFile(tlsPath(dataDir, tokensFile)); err == nil {
		_ = json.Unmarshal(b, &toks)
	}
	return toks
}

func slicesDeleteExpired(toks []storedToken, now time.Time) []storedToken {
	out := toks[:0]
	for _, t := range toks {
		if t.Expires.After(now) {
			out = append(out, t)
		}
	}
	return out
}

func parseJoinToken(s string) (*joinToken, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		return nil, errf(ErrBadToken, "does not start with %q", tokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, tokenPrefix))
	if err != nil {
		return nil, errf(ErrBadToken, "%v", err)
	}
	var t joinToken
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, errf(ErrBadToken, "%v", err)
	}
	if len(t.Addrs) == 0 || len(t.CA) != 64 || t.Secret == "" {
		return nil, errf(ErrBadToken, "incomplete token")
	}
	return &t, nil
}

// checkSecret reports whether secret matches an unexpired token of this (CA holder) node.
func (n *Node) checkSecret(secret string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil {
		return false
	}
	h := hashSecret(raw)
	tokensMu.Lock()
	defer tokensMu.Unlock()
	ok := false
	for _, t := range readTokens(n.cfg.DataDir) {
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) == 1 && t.Expires.After(time.Now()) {
			ok = true
		}
	}
	return ok
}

// handleCertRequest answers a joiner (join ALPN, no client certificate): with a valid token
// secret and a CSR it returns a certificate signed by the cluster CA.
func (n *Node) handleCertRequest(req *rpcRequest) *rpcResponse {
	fail := func(err error) *rpcResponse { return &rpcResponse{Err: wireError(err)} }
	if req.Op != opCert {
		return fail(errf(ErrJoin, "unexpected request %q", req.Op))
	}
	if n.tls.caKey == nil {
		return fail(errf(ErrJoin, "node %s does not hold the cluster CA key", n.cfg.NodeID))
	}
	if !n.checkSecret(req.Secret) {
		n.log.Warn("join refused: unknown or expired token", "node_id", req.ID, "address", req.Addr)
		return fail(errf(ErrBadToken, "unknown or expired token"))
	}
	if req.ID == "" || checkAdvertise(req.Addr) != nil {
		return fail(errf(ErrJoin, "bad node id %q or address %q", req.ID, req.Addr))
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return fail(errf(ErrJoin, "bad certificate request: %v", err))
	}
	der, err := issue(n.tls.ca, n.tls.caKey, csr.PublicKey, req.ID, req.Addr)
	if err != nil {
		return fail(errf(ErrJoin, "sign: %v", err))
	}
	n.log.Info("issued certificate to joining node", "node_id", req.ID, "address", req.Addr)
	return &rpcResponse{Cert: der, CA: n.tls.ca.Raw}
}

// fetchCert obtains this node's certificate with a join token and stores it in DataDir/tls.
func fetchCert(ctx context.Context, cfg *Config, tok *joinToken, advertise string, log *slog.Logger) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cfg.NodeID}}, key)
	if err != nil {
		return err
	}
	dial := cfg.dial
	if dial == nil {
		dial = defaultDial
	}
	req := &rpcRequest{Op: opCert, ID: cfg.NodeID, Addr: advertise, Secret: tok.Secret, CSR: csr}
	var resp *rpcResponse
	err = retry(ctx, func() (bool, error) {
		var last error
		for _, addr := range tok.Addrs {
			resp, last = certRPC(ctx, dial, addr, tok.CA, req)
			if last == nil {
				if resp.Err != nil {
					return false, resp.Err.err() // refused: retrying will not help
				}
				return false, nil
			}
			log.Warn("join: cannot reach CA holder yet", "address", addr, "error", last)
		}
		return true, last
	})
	if err != nil {
		return fmt.Errorf("%w: obtaining a certificate: %w", ErrJoin, err)
	}
	ca, err := x509.ParseCertificate(resp.CA)
	if err != nil || !strings.EqualFold(Fingerprint(ca), tok.CA) {
		return errf(ErrJoin, "CA returned does not match the token")
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(tlsPath(cfg.DataDir, ""), 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{keyFile, "EC PRIVATE KEY", keyDER, 0o600},
		{certFile, "CERTIFICATE", resp.Cert, 0o644},
		{caCertFile, "CERTIFICATE", resp.CA, 0o644},
	} {
		if err := writePEM(tlsPath(cfg.DataDir, f.name), f.typ, f.der, f.mode); err != nil {
			return err
		}
	}
	log.Info("obtained cluster certificate", "ca", tok.CA)
	return nil
}

func certRPC(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr, fprint string, req *rpcRequest) (*rpcResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c, err := dialTLS(cctx, dial, addr, joinClientConfig(fprint), muxJoin)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := writeFrame(c, req); err != nil {
		return nil, err
	}
	var resp rpcResponse
	if err := readFrame(c, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// retry calls f until it reports no retry, or ctx ends; it returns f's last error.
func retry(ctx context.Context, f func() (again bool, err error)) error {
	backoff := 100 * time.Millisecond
	for {
		again, err := f()
		if !again {
			return err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return errors.Join(ctx.Err(), err)
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// joinCluster asks a member (following redirects to the leader) to add this node as a voter.
func (n *Node) joinCluster(ctx context.Context, addrs []string) error {
	req := &rpcRequest{Op: opJoin, ID: n.cfg.NodeID, Addr: n.advertise}
	err := retry(ctx, func() (bool, error) {
		var last error
		for _, addr := range addrs {
			target := addr
			for hops := 0; hops < 3 && target != ""; hops++ {
				cctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
				resp, err := n.rpc.call(cctx, target, req)
				cancel()
				if err != nil {
					last = err
					break
				}
				err = resp.Err.err()
				if err == nil {
					n.log.Info("joined the cluster", "via", target)
					return false, nil
				}
				last = err
				if !errors.Is(err, ErrNotLeader) {
					break
				}
				target = resp.Leader
			}
		}
		n.log.Warn("join: not added yet", "error", last)
		return true, last
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJoin, err)
	}
	return nil
}
