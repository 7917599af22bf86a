// Package spool keeps result batches on disk until the hub acknowledges them.
//
// Layout of the spool directory:
//
//	seq                       the last sequence number handed out (decimal)
//	00000000000000000042.batch  one ResultBatch (protobuf) per file, named by seq
//
// A batch is durable (written to a temp file, fsynced, renamed, directory
// fsynced) before Append returns, so it is on disk before it is sent. The seq
// counter is persisted the same way before the batch file, so seqs never go
// backwards across restarts even when every batch has been acked.
//
// Bound: when more than MaxBatches are pending or they exceed MaxBytes, all
// pending batches are coalesced into one new batch holding only the latest
// result per policy. The hub keeps the latest result per (host, policy), so
// what is lost is intermediate history, never the current state.
package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/atomicfile"
	"google.golang.org/protobuf/proto"
)

const (
	suffix  = ".batch"
	seqFile = "seq"
)

// Options bound the spool.
type Options struct {
	MaxBatches int   // default 1000
	MaxBytes   int64 // default 16 MiB
	Logger     *slog.Logger
}

// Spool is safe for concurrent use.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]*entry
}

type entry struct {
	batch *posturev1.ResultBatch
	size  int64
}

// Open loads (or creates) the spool in dir. Corrupt batch files are moved
// aside with a ".corrupt" suffix and logged rather than failing the start.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBatches <= 0 {
		opts.MaxBatches = 1000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger, pending: map[uint64]*entry{}}
	b, err := os.ReadFile(filepath.Join(dir, seqFile))
	switch {
	case err == nil:
		s.seq, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("spool: parse %s: %w", seqFile, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("spool: read seq: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	for _, de := range ents {
		name := de.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name)) // an interrupted write
			continue
		}
		if !strings.HasSuffix(name, suffix) {
			continue
		}
		path := filepath.Join(dir, name)
		seq, perr := strconv.ParseUint(strings.TrimSuffix(name, suffix), 10, 64)
		data, rerr := os.ReadFile(path)
		var b posturev1.ResultBatch
		if perr != nil || rerr != nil || proto.Unmarshal(data, &b) != nil || b.GetSeq() != seq {
			s.log.Error("spool: unreadable batch moved aside", "file", path)
			_ = os.Rename(path, path+".corrupt")
			continue
		}
		s.pending[seq] = &entry{batch: &b, size: int64(len(data))}
		if seq > s.seq {
			s.seq = seq
		}
	}
	return s, nil
}

// LastSeq returns the highest seq handed out so far.
func (s *Spool) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Append assigns the next seq to results and stores the batch durably. When
// the spool is over its bound, pending batches are coalesced first.
func (s *Spool) Append(results []*posturev1.PolicyResult) (*posturev1.ResultBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var size int64
	for _, e := range s.pending {
		size += e.size
	}
	if len(s.pending)+1 > s.opts.MaxBatches || size > s.opts.MaxBytes {
		return s.coalesceLocked(results)
	}
	return s.writeLocked(results)
}

func (s *Spool) writeLocked(results []*posturev1.PolicyResult) (*posturev1.ResultBatch, error) {
	seq := s.seq + 1
	if err := atomicfile.Write(filepath.Join(s.dir, seqFile), []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("spool: persist seq: %w", err)
	}
	s.seq = seq
	b := &posturev1.ResultBatch{Seq: seq, Results: results}
	data, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("spool: encode batch: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, fileName(seq)), data, 0o600); err != nil {
		return nil, fmt.Errorf("spool: write batch %d: %w", seq, err)
	}
	s.pending[seq] = &entry{batch: b, size: int64(len(data))}
	return b, nil
}

// coalesceLocked replaces every pending batch with one batch holding the
// newest result per policy (plus the new results). The new batch is durable
// before the old files go, so a crash in between only leaves duplicates,
// which the hub tolerates (newer evaluated-at wins).
func (s *Spool) coalesceLocked(results []*posturev1.PolicyResult) (*posturev1.ResultBatch, error) {
	seqs := s.seqsLocked()
	latest := map[string]*posturev1.PolicyResult{}
	var order []string
	add := func(r *posturev1.PolicyResult) {
		prev, ok := latest[r.GetPolicyId()]
		if !ok {
			order = append(order, r.GetPolicyId())
		}
		if !ok || !r.GetEvaluatedAt().AsTime().Before(prev.GetEvaluatedAt().AsTime()) {
			latest[r.GetPolicyId()] = r
		}
	}
	before := 0
	for _, seq := range seqs {
		for _, r := range s.pending[seq].batch.GetResults() {
			before++
			add(r)
		}
	}
	for _, r := range results {
		before++
		add(r)
	}
	merged := make([]*posturev1.PolicyResult, 0, len(order))
	for _, id := range order {
		merged = append(merged, latest[id])
	}
	b, err := s.writeLocked(merged)
	if err != nil {
		return nil, err
	}
	for _, seq := range seqs {
		if err := s.removeLocked(seq); err != nil {
			return nil, err
		}
	}
	s.log.Warn("spool over its bound: coalesced unacknowledged batches to the latest result per policy",
		"batches", len(seqs), "results_before", before, "results_after", len(merged), "seq", b.GetSeq(),
		"max_batches", s.opts.MaxBatches, "max_bytes", s.opts.MaxBytes)
	return b, nil
}

// Pending returns the unacknowledged batches in seq order.
func (s *Spool) Pending() []*posturev1.ResultBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*posturev1.ResultBatch, 0, len(s.pending))
	for _, seq := range s.seqsLocked() {
		out = append(out, s.pending[seq].batch)
	}
	return out
}

// Ack deletes the batch with this seq. Unknown seqs (already acked, or
// coalesced away) are ignored.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[seq]; !ok {
		return nil
	}
	return s.removeLocked(seq)
}

func (s *Spool) removeLocked(seq uint64) error {
	if err := os.Remove(filepath.Join(s.dir, fileName(seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete batch %d: %w", seq, err)
	}
	delete(s.pending, seq)
	return atomicfile.SyncDir(s.dir)
}

func (s *Spool) seqsLocked() []uint64 {
	seqs := make([]uint64, 0, len(s.pending))
	for seq := range s.pending {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs
}

func fileName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, suffix) }
