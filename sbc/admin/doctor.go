package admin

import (
	"net/http"
	"time"
)

// NodeReport is this node's own view for `portcullis doctor` (GET /api/v1/node/doctor): what an
// operator would check on the host, gathered by the node.
type NodeReport struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"` // the node's clock, for the skew with the caller's
	// Listeners are the bound SIP listeners (transport://ip:port).
	Listeners []string `json:"listeners"`
	// Realm is the SIP domain and digest realm in use, RealmSource where it comes from
	// (sip.domain, or recorded in the cluster's state).
	Realm       string `json:"realm"`
	RealmSource string `json:"realm_source"`
	// SIPAdvertise and MediaAdvertise are the addresses written into SIP headers and SDP.
	SIPAdvertise   string `json:"sip_advertise"`
	MediaAdvertise string `json:"media_advertise"`
	// DataDir and its file system's free and total bytes (0 when unknown).
	DataDir   string `json:"data_dir"`
	DiskFree  uint64 `json:"disk_free"`
	DiskTotal uint64 `json:"disk_total"`
	// Certificates are the ones the node's TLS listeners serve.
	Certificates []CertReport `json:"certificates"`
}

// CertReport describes one served certificate (never its key).
type CertReport struct {
	Use       string    `json:"use"`    // sip-tls, admin
	Source    string    `json:"source"` // acme or file
	Serial    string    `json:"serial,omitempty"`
	Domains   []string  `json:"domains,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Error is why there is none or why the last renewal failed.
	Error string `json:"error,omitempty"`
}

func (s *Server) getDoctor(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if s.deps.Doctor == nil {
		return apiErr(http.StatusServiceUnavailable, CodeUnavailable, "the doctor report is not available on this node")
	}
	writeJSON(w, http.StatusOK, s.deps.Doctor())
	return nil
}
