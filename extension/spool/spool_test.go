package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func res(id string, st posturev1.ResultStatus, at time.Time) *posturev1.PolicyResult {
	return &posturev1.PolicyResult{PolicyId: id, Revision: 1, Status: st, EvaluatedAt: timestamppb.New(at)}
}

// pending loads every pending batch, as the hub link does when it sends.
func pending(t testing.TB, s *Spool) []*posturev1.ResultBatch {
	t.Helper()
	var out []*posturev1.ResultBatch
	for _, seq := range s.Seqs(0) {
		b, err := s.Load(seq)
		if err != nil {
			t.Fatalf("load %d: %v", seq, err)
		}
		out = append(out, b)
	}
	return out
}

func seqs(bs []*posturev1.ResultBatch) []uint64 {
	var out []uint64
	for _, b := range bs {
		out = append(out, b.GetSeq())
	}
	return out
}

func TestAppendAckAndResendAfterRestart(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1700000000, 0)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b, err := s.Append([]*posturev1.PolicyResult{res("p", posturev1.ResultStatus_RESULT_STATUS_PASS, now)})
		if err != nil {
			t.Fatal(err)
		}
		if b.GetSeq() != uint64(i+1) {
			t.Fatalf("seq = %d, want %d", b.GetSeq(), i+1)
		}
	}
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileName(2))); !os.IsNotExist(err) {
		t.Fatalf("acked batch file still there: %v", err)
	}

	// "Restart": a fresh Spool over the same directory.
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(pending(t, s2)); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("pending after restart = %v, want [1 3]", got)
	}
	if err := s2.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := s2.Ack(3); err != nil {
		t.Fatal(err)
	}
	if err := s2.Ack(99); err != nil { // unknown seq: ignored
		t.Fatal(err)
	}
	// Everything acked: the counter must still survive a restart.
	s3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pending(t, s3)) != 0 {
		t.Fatalf("pending = %v, want none", seqs(pending(t, s3)))
	}
	b, err := s3.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.GetSeq() != 4 {
		t.Fatalf("seq after restart = %d, want 4 (monotonic)", b.GetSeq())
	}
}

func TestCrashLeftoversAreHandled(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]*posturev1.PolicyResult{res("a", posturev1.ResultStatus_RESULT_STATUS_FAIL, time.Unix(1, 0))}); err != nil {
		t.Fatal(err)
	}
	// A write interrupted before its rename, and a torn file under a real name.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-00000000000000000002.batch-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileName(7)), []byte{0xff, 0xff, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(pending(t, s2)); len(got) != 1 || got[0] != 1 {
		t.Fatalf("pending = %v, want [1]", got)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	joined := strings.Join(names, ",")
	if strings.Contains(joined, ".tmp-") {
		t.Fatalf("temp file not cleaned: %v", names)
	}
	if strings.Contains(joined, fileName(7)) {
		t.Fatalf("corrupt batch left in the spool: %v", names)
	}
	if q := s2.Quarantined(); len(q) != 1 || q[0] != fileName(7) {
		t.Fatalf("quarantined = %v", q)
	}
	b, err := s2.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Seq 7 may have been sent before it was damaged: it is never reused.
	if b.GetSeq() != 8 {
		t.Fatalf("seq = %d, want 8", b.GetSeq())
	}
}

// A damaged seq file (empty, garbled) must neither stop the spool from
// opening nor let it hand out a seq the hub may already have acked.
func TestGarbledSeqIsRebuilt(t *testing.T) {
	for name, damage := range map[string]func(dir string) error{
		"empty seq": func(dir string) error { return os.WriteFile(filepath.Join(dir, seqFile), nil, 0o600) },
		"garbled seq": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, seqFile), []byte("\x00\x17zz"), 0o600)
		},
		"both copies garbled": func(dir string) error {
			if err := os.WriteFile(filepath.Join(dir, seqFile), []byte("12 deadbeef\n"), 0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, seqBackupFile), []byte(""), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1700000000, 0)
			for range 5 {
				if _, err := s.Append([]*posturev1.PolicyResult{res("p", posturev1.ResultStatus_RESULT_STATUS_PASS, now)}); err != nil {
					t.Fatal(err)
				}
			}
			// The hub acked 4 and 5; 1..3 are still spooled.
			for _, seq := range []uint64{4, 5} {
				if err := s.Ack(seq); err != nil {
					t.Fatal(err)
				}
			}
			if err := damage(dir); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(dir, Options{})
			if err != nil {
				t.Fatalf("open with a damaged seq file: %v", err)
			}
			if got := seqs(pending(t, s2)); len(got) != 3 {
				t.Fatalf("pending = %v, want 3 batches", got)
			}
			b, err := s2.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if b.GetSeq() <= 5 {
				t.Fatalf("new seq %d reuses a seq the hub acked (<= 5)", b.GetSeq())
			}
			s3, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if s3.LastSeq() != b.GetSeq() {
				t.Fatalf("seq after rebuild not persisted: %d, want %d", s3.LastSeq(), b.GetSeq())
			}
		})
	}
}

// A batch whose bytes changed on disk is set aside, never sent as valid.
func TestByteFlippedBatchIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	for range 2 {
		if _, err := s.Append([]*posturev1.PolicyResult{res("filevault", posturev1.ResultStatus_RESULT_STATUS_FAIL, now)}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, fileName(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one bit of the status (FAIL=2 -> PASS=1 would need two; any flip
	// in the payload must be caught).
	data[len(data)-1] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(pending(t, s2)); len(got) != 1 || got[0] != 2 {
		t.Fatalf("pending = %v, want only the intact batch [2]", got)
	}
	if q := s2.Quarantined(); len(q) != 1 || q[0] != fileName(1) {
		t.Fatalf("quarantined = %v, want [%s]", q, fileName(1))
	}
	qs, err := os.ReadDir(filepath.Join(dir, quarantineDir))
	if err != nil || len(qs) != 1 || !strings.HasPrefix(qs[0].Name(), fileName(1)) {
		t.Fatalf("quarantine dir: %v %v", qs, err)
	}
}
