package admin

import (
	"context"
	"net"
	"net/http"
	"regexp"

	"github.com/portcullis-sbc/portcullis/cluster"
)

var nodeIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// JoinInput adds a node to the cluster.
type JoinInput struct {
	ID      string `json:"id"`
	Address string `json:"address"` // host:port of the node's cluster listener
}

// LeaderView names the cluster leader; empty members when none is known.
type LeaderView struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// Health is the node's health as /readyz and /api/v1/health report it.
type Health struct {
	Status string `json:"status"` // ok or unavailable
	Node   string `json:"node,omitempty"`
	Leader string `json:"leader,omitempty"`
	// Checks maps each check to "ok" or what is wrong.
	Checks map[string]string `json:"checks"`
}

func (s *Server) health(ctx context.Context) Health {
	h := Health{Status: "ok", Node: s.cfg.NodeID, Checks: map[string]string{}}
	fail := func(check, why string) {
		h.Status = "unavailable"
		h.Checks[check] = why
	}
	h.Checks["node"] = "ok"
	if s.deps.Health != nil {
		if err := s.deps.Health(); err != nil {
			fail("node", err.Error())
		}
	}
	if c := s.deps.Cluster; c != nil {
		id, _ := c.Leader()
		h.Leader = id
		if c.Healthy() {
			h.Checks["cluster"] = "ok"
		} else {
			fail("cluster", "not a running member with a known leader")
		}
	} else {
		h.Checks["cluster"] = "ok (single node, no cluster)"
	}
	return h
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request, _ Principal) error {
	h := s.health(r.Context())
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
	return nil
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if s.deps.Cluster == nil {
		// A node without a cluster is its own, healthy, leader.
		writeJSON(w, http.StatusOK, listOf([]cluster.Member{{ID: s.cfg.NodeID, Suffrage: "voter",
			State: cluster.StateLeader, Healthy: true}}))
		return nil
	}
	writeJSON(w, http.StatusOK, listOf(s.deps.Cluster.Members()))
	return nil
}

func (s *Server) getLeader(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if s.deps.Cluster == nil {
		writeJSON(w, http.StatusOK, LeaderView{ID: s.cfg.NodeID})
		return nil
	}
	id, addr := s.deps.Cluster.Leader()
	if id == "" && addr == "" {
		return apiErr(http.StatusServiceUnavailable, CodeNoLeader, "no leader is known (minority partition or election)")
	}
	writeJSON(w, http.StatusOK, LeaderView{ID: id, Address: addr})
	return nil
}

func (s *Server) needCluster() error {
	if s.deps.Cluster == nil {
		return apiErr(http.StatusConflict, CodeSingleNode, "this node runs without a cluster")
	}
	return nil
}

func (s *Server) joinMember(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in JoinInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if !nodeIDRe.MatchString(in.ID) {
		return invalid("id", "must be 1-64 letters, digits, '.', '_' or '-'")
	}
	if _, port, err := net.SplitHostPort(in.Address); err != nil || port == "" || port == "0" {
		return invalid("address", "%q must be HOST:PORT of the node's cluster listener", trimForLog(in.Address))
	}
	if err := s.needCluster(); err != nil {
		return err
	}
	if err := s.deps.Cluster.Join(r.Context(), in.ID, in.Address); err != nil {
		return err
	}
	s.audit(r.Context(), p.String(), "cluster.join", in.ID+"@"+in.Address)
	writeJSON(w, http.StatusCreated, in)
	return nil
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request, p Principal) error {
	id := r.PathValue("id")
	if !nodeIDRe.MatchString(id) {
		return invalid("id", "%q is not a node ID", trimForLog(id))
	}
	if err := s.needCluster(); err != nil {
		return err
	}
	if err := s.deps.Cluster.Remove(r.Context(), id); err != nil {
		return err
	}
	s.audit(r.Context(), p.String(), "cluster.remove", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
