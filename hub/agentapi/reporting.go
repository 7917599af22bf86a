package agentapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

// DefaultMaxBatchResults caps one ResultBatch. A batch carries one result
// per policy of the host's set; ten thousand is far above any real set and
// far below what one transaction should hold.
const DefaultMaxBatchResults = 10_000

// NewReplicaID names a hub process: host name, pid and randomness, so a
// restarted replica never inherits the streams of its previous life.
func NewReplicaID() string {
	name, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", clean(name, 64), os.Getpid(), hex.EncodeToString(b[:]))
}

// ReplicaID is the id this server records its streams under.
func (s *Server) ReplicaID() string { return s.cfg.ReplicaID }

// streamOpened records in the store that this replica holds the host's
// stream, and returns the time that names this stream. Failing to record it
// only affects what `hosts list` shows.
func (s *Server) streamOpened(ctx context.Context, hostID string) time.Time {
	since := store.StoredTime(s.cfg.Now())
	if err := s.cfg.Store.SetHostStream(ctx, hostID, s.cfg.ReplicaID, since); err != nil {
		s.cfg.Logger.Warn("record stream", "host", hostID, "err", err)
	}
	return since
}

func (s *Server) streamClosed(hostID string, since time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.ClearHostStream(ctx, hostID, s.cfg.ReplicaID, since); err != nil {
		s.cfg.Logger.Warn("clear stream", "host", hostID, "err", err)
	}
}

// admitBatch bounds a batch before any work is done on it. An oversized
// batch is refused (the reason goes back in its Ack, so the agent drops it
// instead of resending it forever); results for policies the host was not
// sent are removed from the batch without error.
func (s *Server) admitBatch(ctx context.Context, sess *session, h *store.Host, b *posturev1.ResultBatch) (refused string, err error) {
	if n := len(b.GetResults()); n > s.cfg.MaxBatchResults {
		s.m.results.WithLabelValues(outcomeRefused).Add(float64(n))
		s.cfg.Logger.Error("refused an oversized result batch", "host", h.ID, "seq", b.GetSeq(),
			"results", n, "max", s.cfg.MaxBatchResults)
		return fmt.Sprintf("batch of %d results exceeds the maximum of %d", n, s.cfg.MaxBatchResults), nil
	}
	allowed := sess.policies.Load()
	if allowed == nil {
		// Spooled batches can arrive before this stream's first PolicySet
		// is built: judge them by the set the host would be sent.
		ps, err := s.PolicySetFor(ctx, *h)
		if err != nil {
			return "", status.Errorf(codes.Unavailable, "build policy set: %v", err)
		}
		sess.setPolicies(ps)
		allowed = sess.policies.Load()
	}
	kept := b.Results[:0]
	dropped := 0
	for _, r := range b.GetResults() {
		if (*allowed)[r.GetPolicyId()] {
			kept = append(kept, r)
		} else {
			dropped++
		}
	}
	// Zero the tail so dropped results are not kept alive by the array.
	clear(b.Results[len(kept):])
	b.Results = kept
	if dropped > 0 {
		s.m.results.WithLabelValues(outcomeUnknown).Add(float64(dropped))
		s.cfg.Logger.Debug("dropped results for policies not in the host's set", "host", h.ID, "seq", b.GetSeq(), "count", dropped)
	}
	return "", nil
}

// recordHealth stores what the agent says about itself; an unhealthy host
// fails closed (compliance rule "unhealthy"), so the verdict is redone.
func (s *Server) recordHealth(ctx context.Context, hostID string, m *posturev1.AgentHealth) error {
	hh := store.HostHealth{
		OsqueryOK:  m.GetOsqueryOk(),
		SpoolOK:    m.GetSpoolOk(),
		Detail:     clean(m.GetDetail(), 1024),
		SpoolDepth: int(min(m.GetSpoolDepth(), 1<<30)),
		At:         s.cfg.Now(),
	}
	hh.SpoolDroppedResults, hh.SpoolDroppedTransitions = spoolDrops(m)
	if err := s.cfg.Store.SetHostHealth(ctx, hostID, hh); err != nil {
		return status.Errorf(codes.Unavailable, "store health: %v", err)
	}
	if !hh.Healthy() {
		s.cfg.Logger.Warn("agent reports it cannot run policies or keep results", "host", hostID,
			"osquery_ok", hh.OsqueryOK, "spool_ok", hh.SpoolOK, "detail", hh.Detail, "spool_depth", hh.SpoolDepth)
	}
	if hh.SpoolDroppedTransitions > 0 {
		s.cfg.Logger.Debug("agent's spool dropped status transitions at its cap; history has gaps", "host", hostID,
			"dropped_results", hh.SpoolDroppedResults, "dropped_transitions", hh.SpoolDroppedTransitions)
	}
	if s.cfg.HealthChanged != nil {
		s.cfg.HealthChanged(hostID)
	}
	return nil
}

// HeartbeatStreams keeps this replica's streams counted as connected on
// every replica until ctx ends.
func (s *Server) HeartbeatStreams(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.cfg.Store.HeartbeatStreams(ctx, s.cfg.ReplicaID, s.cfg.Now()); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("stream heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// spoolDrops bounds the agent's drop counters to what the store keeps.
// Transitions are among the results dropped, so results are at least the
// transitions. Shown to admins only: they never touch the verdict.
func spoolDrops(m *posturev1.AgentHealth) (results, transitions uint64) {
	transitions = min(m.GetSpoolDroppedTransitions(), store.MaxSpoolDropped)
	results = max(min(m.GetSpoolDroppedResults(), store.MaxSpoolDropped), transitions)
	return results, transitions
}
