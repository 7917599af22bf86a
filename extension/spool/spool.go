// Package spool keeps result batches on disk until the hub acknowledges them.
//
// Layout of the spool directory:
//
//	seq, seq.bak              the seq high-water mark: "<decimal> <crc32c hex>"
//	00000000000000000042.batch  one ResultBatch per file, named by seq, in an
//	                          envelope: "PSB1", CRC-32C (big endian), protobuf
//	quarantine/               batches that failed their checksum, set aside
//
// A batch is durable (written to a temp file, fsynced, renamed, directory
// fsynced) before Append returns, so it is on disk before it is sent. The seq
// high-water mark is persisted the same way, in two copies, before the batch
// file, so seqs never go backwards across restarts even when every batch has
// been acked: a hub ack for an old seq must never delete a newer batch.
//
// The spool survives its own corruption: a garbled seq copy is ignored (the
// other copy, the spooled and quarantined batches and, when no copy is
// readable, the clock rebuild it), and a batch whose checksum does not
// match is moved into quarantine/ and reported (Quarantined), never sent.
//
// Bound: when more than MaxBatches are pending or they exceed MaxBytes, all
// pending batches are coalesced into one new batch holding only the latest
// result per policy. The hub keeps the latest result per (host, policy), so
// what is lost is intermediate history, never the current state.
package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/atomicfile"
	"google.golang.org/protobuf/proto"
)

const (
	suffix        = ".batch"
	seqFile       = "seq"
	seqBackupFile = "seq.bak"
	quarantineDir = "quarantine"
)

// magic starts every batch file written by this version.
var magic = []byte("PSB1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

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

	mu          sync.Mutex
	seq         uint64
	pending     map[uint64]*entry
	quarantined []string // files set aside since Open
}

type entry struct {
	batch *posturev1.ResultBatch
	size  int64
}

// Open loads (or creates) the spool in dir. Corrupt batch files are moved
// into quarantine/ and logged rather than failing the start; an unreadable
// seq file is rebuilt, never fatal.
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
	if err := os.MkdirAll(filepath.Join(dir, quarantineDir), 0o700); err != nil {
		return nil, fmt.Errorf("spool: create quarantine: %w", err)
	}
	hw, hwOK := s.readHighWater()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	var maxSeen uint64
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
		if perr == nil && seq > maxSeen {
			maxSeen = seq
		}
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil, fmt.Errorf("spool: read %s: %w", path, rerr)
		}
		b, why := decode(data)
		if why == "" && (perr != nil || b.GetSeq() != seq) {
			why = "seq in the file does not match its name"
		}
		if why != "" {
			s.quarantine(path, why)
			continue
		}
		s.pending[seq] = &entry{batch: b, size: int64(len(data))}
	}
	if qs, err := os.ReadDir(filepath.Join(dir, quarantineDir)); err == nil {
		for _, de := range qs {
			if seq, err := strconv.ParseUint(strings.SplitN(de.Name(), ".", 2)[0], 10, 64); err == nil && seq > maxSeen {
				maxSeen = seq
			}
		}
	}
	s.seq = max(hw, maxSeen)
	if !hwOK {
		// Acked batches leave no trace on disk, so the spool alone cannot
		// say which seqs the hub has seen. Seqs grow by one per batch
		// (a few per second at most), so the wall clock in milliseconds
		// is past any seq handed out since the last such rebuild.
		s.seq = max(s.seq, uint64(max(time.Now().UnixMilli(), 0)))
		s.log.Error("spool: seq high-water mark unreadable; rebuilt from the spool and the clock so no acked seq is reused",
			"spooled_max", maxSeen, "seq", s.seq)
		if err := s.persistSeq(s.seq); err != nil {
			return nil, fmt.Errorf("spool: rewrite seq: %w", err)
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
	if err := s.persistSeq(seq); err != nil {
		return nil, fmt.Errorf("spool: persist seq: %w", err)
	}
	s.seq = seq
	b := &posturev1.ResultBatch{Seq: seq, Results: results}
	data, err := encode(b)
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

// Depth is the number of unacknowledged batches.
func (s *Spool) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Quarantined lists the batch files set aside as corrupt since Open.
func (s *Spool) Quarantined() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.quarantined...)
}

// quarantine moves a corrupt batch out of the spool, loudly.
func (s *Spool) quarantine(path, why string) {
	dst := filepath.Join(s.dir, quarantineDir, filepath.Base(path)+"."+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Rename(path, dst); err != nil {
		s.log.Error("spool: corrupt batch could not be moved to quarantine; deleting it", "file", path, "reason", why, "err", err)
		_ = os.Remove(path)
		dst = path
	} else {
		s.log.Error("spool: CORRUPT BATCH SET ASIDE, not sent", "file", path, "quarantined_as", dst, "reason", why)
	}
	s.quarantined = append(s.quarantined, filepath.Base(path))
	_ = atomicfile.SyncDir(s.dir)
}

// encode wraps a batch in the checksummed envelope.
func encode(b *posturev1.ResultBatch) ([]byte, error) {
	payload, err := proto.Marshal(b)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(magic)+4+len(payload))
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(payload, crcTable))
	return append(out, payload...), nil
}

// DecodeFile checks and unwraps the contents of one spooled batch file, for
// tools and tests that read a spool from outside.
func DecodeFile(data []byte) (*posturev1.ResultBatch, error) {
	b, why := decode(data)
	if why != "" {
		return nil, errors.New(why)
	}
	return b, nil
}

// decode checks and unwraps a batch file; why is "" when it is sound.
// Files without the envelope (written before it existed) are read as bare
// protobuf.
func decode(data []byte) (b *posturev1.ResultBatch, why string) {
	b = &posturev1.ResultBatch{}
	if !bytes.HasPrefix(data, magic) {
		if proto.Unmarshal(data, b) != nil {
			return nil, "neither an enveloped nor a legacy batch"
		}
		return b, ""
	}
	if len(data) < len(magic)+4 {
		return nil, "truncated envelope"
	}
	sum := binary.BigEndian.Uint32(data[len(magic):])
	payload := data[len(magic)+4:]
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, "checksum mismatch"
	}
	if err := proto.Unmarshal(payload, b); err != nil {
		return nil, "checksummed payload does not decode: " + err.Error()
	}
	return b, ""
}

// persistSeq writes the high-water mark to both copies.
func (s *Spool) persistSeq(seq uint64) error {
	v := strconv.FormatUint(seq, 10)
	line := []byte(fmt.Sprintf("%s %08x\n", v, crc32.Checksum([]byte(v), crcTable)))
	if err := atomicfile.Write(filepath.Join(s.dir, seqFile), line, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, seqBackupFile), line, 0o600)
}

// readHighWater returns the largest readable copy of the high-water mark.
// ok is false when a copy existed but none could be read (a fresh spool,
// with no copy at all, is fine).
func (s *Spool) readHighWater() (hw uint64, ok bool) {
	seen, good := false, false
	for _, name := range []string{seqFile, seqBackupFile} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		seen = true
		v, perr := parseSeq(data)
		if err != nil || perr != nil {
			s.log.Error("spool: seq file unreadable; ignoring it", "file", name, "err", errors.Join(err, perr))
			continue
		}
		good = true
		hw = max(hw, v)
	}
	return hw, good || !seen
}

// parseSeq reads "<seq> <crc>" or, from older versions, a bare "<seq>".
func parseSeq(data []byte) (uint64, error) {
	f := strings.Fields(string(data))
	switch len(f) {
	case 1:
		return strconv.ParseUint(f[0], 10, 64)
	case 2:
		sum, err := strconv.ParseUint(f[1], 16, 32)
		if err != nil || uint32(sum) != crc32.Checksum([]byte(f[0]), crcTable) {
			return 0, errors.New("checksum mismatch")
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%d fields", len(f))
}
