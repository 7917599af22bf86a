package store

import (
	"fmt"
	"slices"
	"sort"
)

// RecordPlan is what one result batch writes, computed once for every backend.
type RecordPlan struct {
	// Upsert holds the latest row to write per policy (StatusSince set),
	// sorted by policy id.
	Upsert []Result
	// History holds one entry per status change, in evaluated-at order.
	History []HistoryEntry
	// Deltas are the non-zero count changes, sorted by policy id.
	Deltas  []PolicyCounts
	Outcome RecordOutcome
}

// ValidateResults rejects a batch with a result the store cannot keep, before
// anything is written.
func ValidateResults(rs []Result) error {
	for i, r := range rs {
		switch {
		case r.PolicyID == "":
			return fmt.Errorf("result #%d: empty policy id: %w", i+1, ErrInvalid)
		case !ValidStatus(r.Status):
			return fmt.Errorf("result #%d (%s): status %q not PASS, FAIL or ERROR: %w", i+1, r.PolicyID, r.Status, ErrInvalid)
		case r.EvaluatedAt.IsZero():
			return fmt.Errorf("result #%d (%s): no evaluated-at time: %w", i+1, r.PolicyID, ErrInvalid)
		}
	}
	return nil
}

// PlanRecord decides, per result, what RecordResults writes. revisions holds
// the current revision of every existing policy named in rs; stored the
// host's latest result per policy (only those named in rs are needed).
//
// Results are applied in evaluated-at order (batch order among equal
// times), whatever their order in the batch: a batch may carry several
// results of one policy (an agent's spool compacted during an outage), and
// each status change must reach the history, the newest result winning.
//
// A result is dropped as Unknown when its policy is gone, as Stale when it is
// for another revision or not newer than what is stored. Otherwise it becomes
// the latest row; a history row and a count change follow only when the
// status differs from the stored one (or nothing was stored).
func PlanRecord(hostID string, rs []Result, revisions map[string]int64, stored map[string]Result) (RecordPlan, error) {
	if err := ValidateResults(rs); err != nil {
		return RecordPlan{}, err
	}
	if !slices.IsSortedFunc(rs, byEvaluatedAt) {
		rs = slices.Clone(rs)
		slices.SortStableFunc(rs, byEvaluatedAt)
	}
	var plan RecordPlan
	latest := make(map[string]Result, len(rs))
	for id, r := range stored {
		latest[id] = r
	}
	written := map[string]Result{}
	deltas := NewCountDeltas()
	for _, r := range rs {
		rev, ok := revisions[r.PolicyID]
		if !ok {
			plan.Outcome.Unknown++
			continue
		}
		r.HostID = hostID
		r.EvaluatedAt = StoredTime(r.EvaluatedAt)
		if r.Revision != rev {
			plan.Outcome.Stale++
			continue
		}
		prev, had := latest[r.PolicyID]
		// A stored row of another revision is a leftover the apply should
		// have dropped; it never makes a current result stale.
		if had && prev.Revision == rev && !r.EvaluatedAt.After(prev.EvaluatedAt) {
			plan.Outcome.Stale++
			continue
		}
		changed := !had || prev.Revision != rev || prev.Status != r.Status
		if changed {
			r.StatusSince = r.EvaluatedAt
			if had {
				deltas.Add(r.PolicyID, prev.Status, -1)
			}
			deltas.Add(r.PolicyID, r.Status, +1)
			plan.History = append(plan.History, HistoryEntry{
				HostID: hostID, PolicyID: r.PolicyID, Revision: r.Revision,
				Status: r.Status, Error: r.Error, EvaluatedAt: r.EvaluatedAt,
			})
			plan.Outcome.Changed = append(plan.Outcome.Changed, r)
		} else {
			r.StatusSince = prev.StatusSince
		}
		latest[r.PolicyID] = r
		written[r.PolicyID] = r
	}
	for _, r := range written {
		plan.Upsert = append(plan.Upsert, r)
	}
	sort.Slice(plan.Upsert, func(i, j int) bool { return plan.Upsert[i].PolicyID < plan.Upsert[j].PolicyID })
	plan.Outcome.Updated = len(plan.Upsert)
	plan.Deltas = deltas.Sorted()
	return plan, nil
}

func byEvaluatedAt(a, b Result) int { return a.EvaluatedAt.Compare(b.EvaluatedAt) }
