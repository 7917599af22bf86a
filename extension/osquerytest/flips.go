package osquerytest

import (
	"context"
	_ "embed"
	"fmt"
	"sort"
	"sync"

	"gopkg.in/yaml.v3"
)

//go:embed fixtures/flips.yml
var flipsYAML []byte

var (
	flipsOnce sync.Once
	flips     map[string][]string
	flipsErr  error
)

// Flips returns, for every shipped policy id, the SQL statements that turn
// the healthy fixture host of its platform into one that fails the policy
// (fixtures/flips.yml). The map is a copy.
func Flips() (map[string][]string, error) {
	flipsOnce.Do(func() {
		flipsErr = yaml.Unmarshal(flipsYAML, &flips)
		if flipsErr != nil {
			flipsErr = fmt.Errorf("osquerytest: fixtures/flips.yml: %w", flipsErr)
		}
	})
	if flipsErr != nil {
		return nil, flipsErr
	}
	out := make(map[string][]string, len(flips))
	for k, v := range flips {
		out[k] = append([]string(nil), v...)
	}
	return out, nil
}

// FlipIDs lists the policy ids that have a flip, sorted.
func FlipIDs() ([]string, error) {
	m, err := Flips()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// Break applies the flip of a shipped policy, so that policy fails on this
// host (e.g. Break(ctx, "macos-filevault") turns FileVault off).
func (s *Server) Break(ctx context.Context, policyID string) error {
	m, err := Flips()
	if err != nil {
		return err
	}
	stmts, ok := m[policyID]
	if !ok {
		return fmt.Errorf("osquerytest: no flip for policy %q", policyID)
	}
	for _, q := range stmts {
		if err := s.Exec(ctx, q); err != nil {
			return fmt.Errorf("osquerytest: break %s: %w", policyID, err)
		}
	}
	return nil
}

// Reset restores the healthy fixture host (identity facts unchanged).
// Registered extensions and their tables survive.
func (s *Server) Reset(ctx context.Context) error {
	script, err := fixtureScript(s.opts, s.startTime)
	if err != nil {
		return err
	}
	s.ext.mu.Lock()
	defer s.ext.mu.Unlock()
	keep := map[string]bool{}
	for _, e := range s.ext.exts {
		for _, t := range e.tables {
			keep[t.name] = true
		}
	}
	if err := s.db.reset(ctx, script, keep); err != nil {
		return err
	}
	for id, e := range s.ext.exts {
		if err := s.db.exec(ctx,
			"INSERT INTO osquery_extensions (uuid, name, version, sdk_version, path, type) VALUES (?, ?, ?, ?, ?, 'extension')",
			int64(id), e.info.Name, e.info.Version, e.info.SdkVersion, s.ext.socketFor(id)); err != nil {
			return err
		}
	}
	return nil
}
