package postgres_test

import (
	"context"
	"testing"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
	"github.com/posture-dev/posture/hub/store/storetest"
)

func BenchmarkRecordResults(b *testing.B) {
	storetest.BenchmarkRecordResults(b, func(tb testing.TB) store.Store {
		s, err := postgres.Open(context.Background(), pgtest.URL(tb))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	})
}
