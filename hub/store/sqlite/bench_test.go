package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
	"github.com/posture-dev/posture/hub/store/storetest"
)

func BenchmarkRecordResults(b *testing.B) {
	storetest.BenchmarkRecordResults(b, func(tb testing.TB) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "posture.db"))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	})
}
