package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// webhookSender POSTs each batch as a JSON array of envelopes. A 2xx answer means delivered;
// anything else is retried. The body is signed when a secret is set.
type webhookSender struct {
	spec    Spec
	client  *http.Client
	display string // the URL without its password, for errors and logs
}

func newWebhook(spec Spec) (*webhookSender, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: sink %q: url must be http(s)://host/path", ErrBadSpec, spec.Name)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if spec.TLS != nil {
		tr.TLSClientConfig = spec.TLS
	}
	// Logs name the URL without its password and query (either may hold a credential).
	shown := *u
	shown.RawQuery, shown.Fragment = "", ""
	return &webhookSender{spec: spec, display: shown.Redacted(),
		client: &http.Client{Transport: tr, Timeout: spec.Timeout,
			// A redirect would re-send the signed body somewhere else: refuse.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Sign returns the signature header value of body: "sha256=" + hex(HMAC-SHA256(secret, body)).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func batchBody(items []Item) []byte {
	n := 2
	for _, it := range items {
		n += len(it.Body) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.Body...)
	}
	return append(b, ']')
}

func (w *webhookSender) send(ctx context.Context, items []Item) error {
	body := batchBody(items)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.spec.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.display, ErrBadSpec)
	}
	req.Header.Set("Content-Type", "application/json")
	if len(w.spec.Secret) > 0 {
		req.Header.Set(w.spec.SignatureHeader, Sign(w.spec.Secret, body))
	}
	res, err := w.client.Do(req)
	if err != nil {
		// url.Error prints the whole URL, password included: name it redacted.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook POST %s: %w", w.display, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("webhook POST %s: %w: HTTP %d", w.display, ErrRejected, res.StatusCode)
	}
	return nil
}

func (w *webhookSender) Close() error {
	w.client.CloseIdleConnections()
	return nil
}
