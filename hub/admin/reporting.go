package admin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

// DefaultStreamTTL is how old another replica's heartbeat may be for its
// streams to count as connected: three heartbeats of the hub's default
// 15 s period.
const DefaultStreamTTL = 45 * time.Second

// addReporting fills a host's cadence, health and connection state. A host
// is connected when this replica holds its stream or the store says a live
// replica does.
func (s *Server) addReporting(ph *posturev1.Host, r store.HostReporting) {
	if r.ConnectedAt(s.cfg.Now(), s.cfg.StreamTTL) {
		ph.Connected = true
		ph.ConnectedReplica = r.StreamReplica
	}
	if r.ReportInterval > 0 {
		ph.ReportInterval = durationpb.New(r.ReportInterval)
	}
	if !r.LastReportAt.IsZero() {
		ph.LastReportAt = ts(r.LastReportAt)
	}
	if h := r.Health; h != nil {
		ph.Health = &posturev1.HostHealth{OsqueryOk: h.OsqueryOK, SpoolOk: h.SpoolOK, Detail: h.Detail,
			SpoolDepth: uint32(min(max(h.SpoolDepth, 0), 1<<31)), ReportedAt: ts(h.At),
			SpoolDroppedResults: h.SpoolDroppedResults, SpoolDroppedTransitions: h.SpoolDroppedTransitions}
	}
}
