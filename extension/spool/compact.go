package spool

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/atomicfile"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// class is what compaction makes of one spooled result.
type class int

const (
	stale      class = iota // not newer than an earlier result of its policy
	repeat                  // same status and revision as the policy's previous result
	transition              // first of its policy, or a change of status or revision
)

type pos struct {
	seq uint64
	idx int
}

// policyTrack follows one policy through the spool in seq order.
type policyTrack struct {
	seen     bool
	lastSec  int64
	lastNano int32
	status   posturev1.ResultStatus
	revision int64
	// Set by the first pass: the policy's newest result, never dropped.
	newest      pos
	newestSize  int64
	newestClass class
}

// classifier classifies results walked in spool order. Both compaction
// passes walk the same files with their own classifier and agree.
type classifier map[string]*policyTrack

func (c classifier) next(r *posturev1.PolicyResult) (class, *policyTrack) {
	t := c[r.GetPolicyId()]
	if t == nil {
		t = &policyTrack{}
		c[r.GetPolicyId()] = t
	}
	sec, nano := r.GetEvaluatedAt().GetSeconds(), r.GetEvaluatedAt().GetNanos()
	if t.seen && (sec < t.lastSec || sec == t.lastSec && nano <= t.lastNano) {
		return stale, t
	}
	cls := repeat
	if !t.seen || r.GetStatus() != t.status || r.GetRevision() != t.revision {
		cls = transition
	}
	t.seen, t.lastSec, t.lastNano, t.status, t.revision = true, sec, nano, r.GetStatus(), r.GetRevision()
	return cls, t
}

// resultSize is what one result adds to an encoded batch.
func resultSize(r *posturev1.PolicyResult) int64 {
	return int64(protowire.SizeTag(2) + protowire.SizeBytes(proto.Size(r)))
}

// compactLocked rewrites the pending batches within the bound, leaving
// room for reserve more bytes (the batch being appended). See the package
// comment for what is kept and dropped.
func (s *Spool) compactLocked(reserve int64) error {
	before, beforeBytes := len(s.pending), s.bytes

	// Pass 1: classify every result and total the bytes of each class.
	var inputs []meta
	track := classifier{}
	var sizes [3]int64
	var counts [3]int
	for _, m := range slices.Clone(s.pending) {
		b, err := s.readLocked(m)
		if errors.Is(err, ErrNotPending) {
			continue // set aside and logged
		}
		if err != nil {
			return err
		}
		inputs = append(inputs, m)
		for i, r := range b.GetResults() {
			cls, t := track.next(r)
			counts[cls]++
			if cls == stale {
				continue
			}
			size := resultSize(r)
			sizes[cls] += size
			t.newest, t.newestSize, t.newestClass = pos{m.seq, i}, size, cls
		}
	}
	var keep int64 // newest results
	for _, t := range track {
		sizes[t.newestClass] -= t.newestSize
		keep += t.newestSize
	}
	repeats, transitions := sizes[repeat], sizes[transition]

	// Each new file may waste up to a block and carries an envelope; bound
	// the number of files by the results that could be kept.
	kept := counts[repeat] + counts[transition]
	files := int64(kept/s.opts.MaxBatchResults+1) + (keep+repeats+transitions)/maxCompactedFileBytes + 1
	overhead := files * (blockSize + 32)
	room := s.opts.MaxBytes - reserve - overhead      // what fits under the cap
	target := min(room, s.opts.MaxBytes*3/4-overhead) // what compaction aims for
	total := keep + repeats + transitions
	dropRepeats := min(max(total-target, 0), repeats)
	var dropTransitions int64
	if keep+transitions > room {
		// Transitions alone do not fit: history is lost, oldest first.
		dropRepeats = repeats
		dropTransitions = min(max(keep+transitions-target, 0), transitions)
	}

	// Pass 2: stream the same results again, keep what the plan keeps, and
	// write it as new batches above every old seq.
	pass2 := classifier{}
	var written []meta
	var chunk []*posturev1.PolicyResult
	var chunkBytes, droppedRepeatBytes, droppedTransitionBytes int64
	var droppedRepeats, droppedTransitions, keptResults int
	lostByPolicy := map[string]int{}
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		m, _, err := s.writeLocked(chunk)
		if err != nil {
			return err
		}
		written = append(written, m)
		chunk, chunkBytes = nil, 0
		return nil
	}
	abort := func(err error) error {
		// The old batches are all still there: the new ones only duplicate them.
		for _, m := range written {
			_ = os.Remove(filepath.Join(s.dir, fileName(m.seq)))
		}
		_ = atomicfile.SyncDir(s.dir)
		return fmt.Errorf("spool: compaction: %w", err)
	}
	for _, m := range inputs {
		b, err := s.readLocked(m)
		if err != nil {
			return abort(err) // changed since the first pass
		}
		for i, r := range b.GetResults() {
			cls, _ := pass2.next(r)
			if cls == stale {
				continue
			}
			size := resultSize(r)
			switch {
			case track[r.GetPolicyId()].newest == pos{m.seq, i}:
			case cls == repeat && droppedRepeatBytes < dropRepeats:
				droppedRepeatBytes += size
				droppedRepeats++
				continue
			case cls == transition && droppedTransitionBytes < dropTransitions:
				droppedTransitionBytes += size
				droppedTransitions++
				lostByPolicy[r.GetPolicyId()]++
				continue
			}
			if len(chunk) >= s.opts.MaxBatchResults || chunkBytes+size > maxCompactedFileBytes {
				if err := flush(); err != nil {
					return abort(err)
				}
			}
			chunk = append(chunk, r)
			chunkBytes += size
			keptResults++
		}
	}
	if err := flush(); err != nil {
		return abort(err)
	}
	if s.beforeRemove != nil {
		if err := s.beforeRemove(); err != nil {
			return fmt.Errorf("spool: compaction stopped before removing old batches: %w", err)
		}
	}

	// The new batches are durable: count the drops, then let the old go.
	s.drops.Results += uint64(droppedRepeats + droppedTransitions)
	s.drops.Transitions += uint64(droppedTransitions)
	if err := s.persistDrops(); err != nil {
		s.log.Error("spool: could not persist the drop counters", "err", err)
	}
	var left []meta // old batches that could not be removed: still pending
	for _, m := range inputs {
		if err := os.Remove(filepath.Join(s.dir, fileName(m.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: could not remove a compacted batch; it stays pending (a duplicate)", "seq", m.seq, "err", err)
			left = append(left, m)
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		s.log.Warn("spool: sync after compaction", "err", err)
	}
	s.pending = append(left, written...)
	s.bytes = 0
	for _, m := range s.pending {
		s.bytes += m.size
	}
	s.publishLocked()

	attrs := []any{"batches_before", before, "bytes_before", beforeBytes, "batches_after", len(s.pending),
		"bytes_after", s.bytes, "max_bytes", s.opts.MaxBytes, "results_kept", keptResults,
		"repeats_dropped", droppedRepeats, "duplicates_dropped", counts[stale], "first_seq", firstSeq(written)}
	if droppedTransitions > 0 {
		ids := make([]string, 0, len(lostByPolicy))
		for id := range lostByPolicy {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if len(ids) > 20 {
			ids = append(ids[:20], fmt.Sprintf("and %d more", len(ids)-20))
		}
		s.log.Error("SPOOL FULL OF STATUS TRANSITIONS: dropped the oldest; the hub will never see these changes (newest result per policy kept)",
			append(attrs, "transitions_dropped", droppedTransitions, "policies", strings.Join(ids, ","),
				"transitions_dropped_total", s.drops.Transitions)...)
	} else {
		s.log.Warn("spool over its cap: compacted; every status transition and the newest result per policy kept", attrs...)
	}
	if s.bytes+reserve > s.opts.MaxBytes {
		s.log.Error("spool: still over its cap after compaction: the newest results alone exceed it; raise --spool-max-bytes",
			"bytes", s.bytes, "max_bytes", s.opts.MaxBytes)
	}
	return nil
}

func firstSeq(ms []meta) uint64 {
	if len(ms) == 0 {
		return 0
	}
	return ms[0].seq
}

// persistDrops writes the drop counters: "<results> <transitions> <crc>".
func (s *Spool) persistDrops() error {
	v := strconv.FormatUint(s.drops.Results, 10) + " " + strconv.FormatUint(s.drops.Transitions, 10)
	line := fmt.Sprintf("%s %08x\n", v, crc32Checksum(v))
	return atomicfile.Write(filepath.Join(s.dir, dropsFile), []byte(line), 0o600)
}

// readDrops loads the drop counters; a damaged file counts from zero.
func (s *Spool) readDrops() Drops {
	data, err := os.ReadFile(filepath.Join(s.dir, dropsFile))
	if errors.Is(err, os.ErrNotExist) {
		return Drops{}
	}
	f := strings.Fields(string(data))
	if err == nil && len(f) == 3 {
		sum, serr := strconv.ParseUint(f[2], 16, 32)
		r, rerr := strconv.ParseUint(f[0], 10, 64)
		t, terr := strconv.ParseUint(f[1], 10, 64)
		if serr == nil && rerr == nil && terr == nil && uint32(sum) == crc32Checksum(f[0]+" "+f[1]) {
			return Drops{Results: r, Transitions: t}
		}
	}
	s.log.Error("spool: drop counters unreadable; counting from zero", "file", dropsFile, "err", err)
	return Drops{}
}

func crc32Checksum(v string) uint32 { return crc32.Checksum([]byte(v), crcTable) }
