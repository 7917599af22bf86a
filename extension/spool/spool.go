// Package spool keeps result batches on disk until the hub acknowledges them.
//
// Layout of the spool directory:
//
//	seq, seq.bak              the seq high-water mark: "<decimal> <crc32c hex>"
//	00000000000000000042.batch  one ResultBatch per file, named by seq, in an
//	                          envelope: "PSB1", CRC-32C (big endian), protobuf
//	dropped                   results the bound dropped, ever: "<results>
//	                          <transitions> <crc32c hex>"
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
// Memory: only the seq and size of each pending batch stay in memory.
// Batches are read from disk one at a time when they are sent (Seqs, Load)
// or compacted, so a spool filled by a days-long outage costs kilobytes of
// heap, not the size of the spool.
//
// Bound: the files are capped at Options.MaxBytes (64 MiB by default), each
// file counted as at least one 4 KiB block, what it takes on disk. When an
// Append would go over the cap, the pending batches are compacted, streamed
// from disk in seq order. Per policy, compaction keeps
//
//   - the newest result, always;
//   - every status transition: a result whose status (or policy revision)
//     differs from the policy's previous result in the spool. The first
//     spooled result of a policy counts as one, since what the hub last
//     stored is unknown.
//
// and drops, until the spool is under three quarters of the cap:
//
//   - always, results not newer than an earlier one of their policy
//     (duplicates left by a crash, a clock set back): the hub ignores them;
//   - first, the oldest results that only repeat the previous status: the
//     hub records history only on a change, so nothing it keeps is lost;
//   - only when the transitions and newest results alone exceed the cap (a
//     policy flapping for days), the oldest transitions too, logged as an
//     error and counted (Dropped): that history never reaches the hub.
//
// The kept results are written, in the order they were spooled, as new
// batches of at most MaxBatchResults results (far below the hub's limit of
// 10,000) with seqs above every earlier one. Each is durable before any old
// file is removed: a crash in between leaves duplicates, which the hub
// ignores (a result not newer than the stored one is stale) and the next
// compaction drops.
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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/atomicfile"
	"google.golang.org/protobuf/proto"
)

const (
	suffix        = ".batch"
	seqFile       = "seq"
	seqBackupFile = "seq.bak"
	dropsFile     = "dropped"
	quarantineDir = "quarantine"
)

// Limits of the bound.
const (
	// DefaultMaxBytes is the cap when Options.MaxBytes is zero.
	DefaultMaxBytes int64 = 64 << 20
	// MinMaxBytes is the smallest cap accepted: a few batches of a large
	// policy set must fit.
	MinMaxBytes int64 = 64 << 10
	// DefaultMaxBatchResults caps the results of one compacted batch.
	DefaultMaxBatchResults = 2000
	// hubMaxBatchResults is what the hub accepts in one batch; larger
	// batches are refused (and dropped).
	hubMaxBatchResults = 10_000
	// blockSize is what one file takes on disk at least.
	blockSize = 4096
	// maxCompactedFileBytes bounds one compacted batch, and so what Load
	// holds in memory at once.
	maxCompactedFileBytes = 256 << 10
	// envelopeLen is the magic and checksum before the protobuf.
	envelopeLen = 8
)

// magic starts every batch file written by this version.
var magic = []byte("PSB1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrNotPending is returned by Load for a seq that is not (or no longer)
// spooled: acked, compacted away or set aside as corrupt.
var ErrNotPending = errors.New("batch not pending")

// Options bound the spool.
type Options struct {
	// MaxBytes caps the spool's files (default DefaultMaxBytes; at least
	// MinMaxBytes). Each file counts at least one 4 KiB block.
	MaxBytes int64
	// MaxBatchResults caps the results of a compacted batch (default
	// DefaultMaxBatchResults, at most the hub's 10,000).
	MaxBatchResults int
	Logger          *slog.Logger
}

// Drops counts results the bound dropped since the spool was created.
type Drops struct {
	// Results dropped in all, transitions included.
	Results uint64
	// Transitions: status changes dropped because the transitions alone
	// exceeded the cap. The hub's history will never show them.
	Transitions uint64
}

// Spool is safe for concurrent use.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	seq         uint64
	pending     []meta // by seq
	bytes       int64  // sum of pending sizes
	drops       Drops
	quarantined []string // files set aside since Open

	// counters is published after every change, for readers (the
	// posture_status table) that must not wait out a compaction.
	counters atomic.Pointer[counters]

	// beforeRemove (tests) runs once a compaction's new batches are
	// durable, before the old files go; an error stops the compaction
	// right there, as a crash would.
	beforeRemove func() error
}

type counters struct {
	depth int
	bytes int64
	drops Drops
}

// publishLocked makes the current counters visible to Depth, Bytes and
// Dropped.
func (s *Spool) publishLocked() {
	s.counters.Store(&counters{depth: len(s.pending), bytes: s.bytes, drops: s.drops})
}

// meta is all the spool keeps in memory per pending batch.
type meta struct {
	seq  uint64
	size int64 // bytes counted against the cap
}

// charge is what a file of n bytes counts against the cap.
func charge(n int) int64 { return (int64(n) + blockSize - 1) / blockSize * blockSize }

// Open loads (or creates) the spool in dir. Corrupt batch files are moved
// into quarantine/ and logged rather than failing the start; an unreadable
// seq file is rebuilt, never fatal.
func Open(dir string, opts Options) (*Spool, error) {
	switch {
	case opts.MaxBytes == 0:
		opts.MaxBytes = DefaultMaxBytes
	case opts.MaxBytes < MinMaxBytes:
		return nil, fmt.Errorf("spool: a cap of %d bytes is below the minimum of %d (64 KiB)", opts.MaxBytes, MinMaxBytes)
	}
	if opts.MaxBatchResults <= 0 {
		opts.MaxBatchResults = DefaultMaxBatchResults
	}
	opts.MaxBatchResults = min(opts.MaxBatchResults, hubMaxBatchResults)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger}
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
		// Each batch is checked once here, then only its size is kept.
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
		s.pending = append(s.pending, meta{seq: seq, size: charge(len(data))})
		s.bytes += charge(len(data))
	}
	sort.Slice(s.pending, func(i, j int) bool { return s.pending[i].seq < s.pending[j].seq })
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
	s.drops = s.readDrops()
	s.publishLocked()
	if s.bytes > s.opts.MaxBytes {
		s.log.Warn("spool: over its cap (was it lowered?); the next result compacts it", "bytes", s.bytes, "max_bytes", s.opts.MaxBytes)
	}
	return s, nil
}

// LastSeq returns the highest seq handed out so far.
func (s *Spool) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Append assigns the next seq to results and stores the batch durably.
// When the batch would take the spool over its cap, the pending batches
// are compacted first (see the package comment). A failed compaction is
// logged and the batch is stored anyway: results are never refused for it.
func (s *Spool) Append(results []*posturev1.PolicyResult) (*posturev1.ResultBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := charge(envelopeLen + proto.Size(&posturev1.ResultBatch{Seq: s.seq + 1, Results: results}))
	if len(s.pending) > 0 && s.bytes+size > s.opts.MaxBytes {
		if err := s.compactLocked(size); err != nil {
			s.log.Error("spool: compaction failed; the spool stays over its cap until the next result",
				"err", err, "bytes", s.bytes, "max_bytes", s.opts.MaxBytes)
		}
	}
	m, b, err := s.writeLocked(results)
	if err != nil {
		return nil, err
	}
	s.pending = append(s.pending, m)
	s.bytes += m.size
	s.publishLocked()
	return b, nil
}

// writeLocked stores results as a batch under the next seq; the caller
// records the returned meta.
func (s *Spool) writeLocked(results []*posturev1.PolicyResult) (meta, *posturev1.ResultBatch, error) {
	seq := s.seq + 1
	if err := s.persistSeq(seq); err != nil {
		return meta{}, nil, fmt.Errorf("spool: persist seq: %w", err)
	}
	s.seq = seq
	b := &posturev1.ResultBatch{Seq: seq, Results: results}
	data, err := encode(b)
	if err != nil {
		return meta{}, nil, fmt.Errorf("spool: encode batch: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, fileName(seq)), data, 0o600); err != nil {
		return meta{}, nil, fmt.Errorf("spool: write batch %d: %w", seq, err)
	}
	return meta{seq: seq, size: charge(len(data))}, b, nil
}

// Seqs returns the pending seqs above after, in order.
func (s *Spool) Seqs(after uint64) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].seq > after })
	out := make([]uint64, 0, len(s.pending)-i)
	for _, m := range s.pending[i:] {
		out = append(out, m.seq)
	}
	return out
}

// Load reads one pending batch from disk. It returns an error wrapping
// ErrNotPending when seq is not spooled (acked or compacted away since it
// was listed, or set aside now because its checksum no longer matches).
func (s *Spool) Load(seq uint64) (*posturev1.ResultBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.find(seq)
	if !ok {
		return nil, fmt.Errorf("spool: batch %d: %w", seq, ErrNotPending)
	}
	return s.readLocked(s.pending[i])
}

// readLocked reads and checks a pending batch. A batch that vanished or
// fails its checksum is forgotten (and set aside): the error wraps
// ErrNotPending.
func (s *Spool) readLocked(m meta) (*posturev1.ResultBatch, error) {
	path := filepath.Join(s.dir, fileName(m.seq))
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: a pending batch file vanished", "file", path)
		s.forgetLocked(m.seq)
		return nil, fmt.Errorf("spool: batch %d vanished: %w", m.seq, ErrNotPending)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read batch %d: %w", m.seq, err)
	}
	b, why := decode(data)
	if why == "" && b.GetSeq() != m.seq {
		why = "seq in the file does not match its name"
	}
	if why != "" {
		s.quarantine(path, why)
		s.forgetLocked(m.seq)
		return nil, fmt.Errorf("spool: batch %d corrupt (%s), set aside: %w", m.seq, why, ErrNotPending)
	}
	return b, nil
}

// Ack deletes the batch with this seq. Unknown seqs (already acked, or
// compacted away) are ignored.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.find(seq); !ok {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, fileName(seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete batch %d: %w", seq, err)
	}
	s.forgetLocked(seq)
	return atomicfile.SyncDir(s.dir)
}

func (s *Spool) find(seq uint64) (int, bool) {
	i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].seq >= seq })
	return i, i < len(s.pending) && s.pending[i].seq == seq
}

func (s *Spool) forgetLocked(seq uint64) {
	if i, ok := s.find(seq); ok {
		s.bytes -= s.pending[i].size
		s.pending = slices.Delete(s.pending, i, i+1)
		s.publishLocked()
	}
}

func fileName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, suffix) }

// Depth is the number of unacknowledged batches. Depth, Bytes and Dropped
// never wait for a compaction in progress (they show the state before it).
func (s *Spool) Depth() int { return s.counters.Load().depth }

// Bytes is what the pending batches count against the cap.
func (s *Spool) Bytes() int64 { return s.counters.Load().bytes }

// MaxBytes is the cap in force.
func (s *Spool) MaxBytes() int64 { return s.opts.MaxBytes }

// Dropped counts what the bound dropped since the spool was created
// (persisted across restarts).
func (s *Spool) Dropped() Drops { return s.counters.Load().drops }

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
