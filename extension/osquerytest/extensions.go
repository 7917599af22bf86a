package osquerytest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/osquery/osquery-go/gen/osquery"
)

// extensionRegistry tracks registered extensions the way osqueryd's
// ExtensionManagerHandler does, and materialises their table plugins into the
// fixture database when a query names them.
type extensionRegistry struct {
	s       *Server
	mu      sync.Mutex
	exts    map[osquery.ExtensionRouteUUID]*extension
	watcher sync.Once
}

type extension struct {
	uuid        osquery.ExtensionRouteUUID
	info        osquery.InternalExtensionInfo
	tables      []extTable
	failedPings int
}

type extTable struct {
	name string
	cols []column
	re   *regexp.Regexp
}

func newExtensionRegistry(s *Server) *extensionRegistry {
	return &extensionRegistry{s: s, exts: map[osquery.ExtensionRouteUUID]*extension{}}
}

// Extensions lists the currently registered extensions by route UUID.
func (s *Server) Extensions() map[int64]string {
	out := map[int64]string{}
	for id, info := range s.ext.list() {
		out[int64(id)] = info.Name
	}
	return out
}

func (r *extensionRegistry) list() osquery.InternalExtensionList {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := osquery.InternalExtensionList{}
	for id, e := range r.exts {
		info := e.info
		out[id] = &info
	}
	return out
}

func (r *extensionRegistry) socketFor(id osquery.ExtensionRouteUUID) string {
	return fmt.Sprintf("%s.%d", r.s.opts.SocketPath, id)
}

func (r *extensionRegistry) register(ctx context.Context, info *osquery.InternalExtensionInfo, registry osquery.ExtensionRegistry) *osquery.ExtensionStatus {
	fail := func(msg string) *osquery.ExtensionStatus {
		r.s.log.Warn("refusing extension", "name", info.GetName(), "reason", msg)
		return &osquery.ExtensionStatus{Code: int32(osquery.ExtensionCode_EXT_FAILED), Message: msg}
	}
	if info == nil {
		return fail("Invalid extension info")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.exts {
		if e.info.Name == info.Name {
			return fail("Duplicate extension registered")
		}
	}

	var tables []extTable
	names := make([]string, 0, len(registry["table"]))
	for name := range registry["table"] {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		routes := registry["table"][name]
		if r.s.db.hasTable(ctx, name) || r.tableOwnerLocked(name) != nil {
			return fail("Failed adding registry broadcast")
		}
		var cols []column
		for _, route := range routes {
			if id, ok := route["id"]; ok && id != "column" {
				continue
			}
			if route["name"] == "" {
				continue
			}
			cols = append(cols, column{name: route["name"], typ: osqueryTypeName(route["type"])})
		}
		if len(cols) == 0 {
			return fail("Failed adding registry broadcast")
		}
		tables = append(tables, extTable{
			name: name,
			cols: cols,
			re:   regexp.MustCompile(`(?i)(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_])`),
		})
	}

	// osqueryd assigns a random 16-bit route id per registration.
	var id osquery.ExtensionRouteUUID
	for {
		id = osquery.ExtensionRouteUUID(1 + rand.IntN(65535))
		if _, used := r.exts[id]; !used {
			break
		}
	}
	for _, t := range tables {
		ddl := "CREATE TABLE " + quoteIdent(t.name) + " ("
		for i, c := range t.cols {
			if i > 0 {
				ddl += ", "
			}
			typ := c.typ
			if typ == "UNKNOWN" {
				typ = "TEXT"
			}
			ddl += quoteIdent(c.name) + " " + typ
		}
		ddl += ")"
		if err := r.s.db.exec(ctx, ddl); err != nil {
			r.dropTables(ctx, tables)
			return fail("Failed adding registry broadcast")
		}
	}
	if err := r.s.db.exec(ctx,
		"INSERT INTO osquery_extensions (uuid, name, version, sdk_version, path, type) VALUES (?, ?, ?, ?, ?, 'extension')",
		int64(id), info.Name, info.Version, info.SdkVersion, r.socketFor(id)); err != nil {
		r.s.log.Warn("osquery_extensions update failed", "err", err)
	}
	r.exts[id] = &extension{uuid: id, info: *info, tables: tables}
	r.s.log.Debug("registered extension", "name", info.Name, "uuid", id, "tables", len(tables))
	r.watcher.Do(r.startWatcher)
	return &osquery.ExtensionStatus{Code: 0, Message: "OK", UUID: id}
}

func (r *extensionRegistry) tableOwnerLocked(name string) *extension {
	for _, e := range r.exts {
		for _, t := range e.tables {
			if equalFold(t.name, name) {
				return e
			}
		}
	}
	return nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (r *extensionRegistry) dropTables(ctx context.Context, tables []extTable) {
	for _, t := range tables {
		if err := r.s.db.exec(ctx, "DROP TABLE IF EXISTS "+quoteIdent(t.name)); err != nil {
			r.s.log.Warn("drop extension table", "table", t.name, "err", err)
		}
	}
}

func (r *extensionRegistry) deregister(ctx context.Context, id osquery.ExtensionRouteUUID) *osquery.ExtensionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.exts[id]
	if !ok {
		return &osquery.ExtensionStatus{Code: int32(osquery.ExtensionCode_EXT_FAILED), Message: "No extension UUID registered", UUID: 0}
	}
	r.removeLocked(ctx, e)
	return &osquery.ExtensionStatus{Code: 0, UUID: id}
}

func (r *extensionRegistry) removeLocked(ctx context.Context, e *extension) {
	delete(r.exts, e.uuid)
	r.dropTables(ctx, e.tables)
	if err := r.s.db.exec(ctx, "DELETE FROM osquery_extensions WHERE uuid = ?", int64(e.uuid)); err != nil {
		r.s.log.Warn("osquery_extensions update failed", "err", err)
	}
	r.s.log.Debug("deregistered extension", "name", e.info.Name, "uuid", e.uuid)
}

// startWatcher pings extensions like osqueryd's extension watcher and drops
// the ones whose socket has gone away.
func (r *extensionRegistry) startWatcher() {
	r.s.wg.Add(1)
	go func() {
		defer r.s.wg.Done()
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.s.ctx.Done():
				return
			case <-t.C:
			}
			r.mu.Lock()
			var ids []osquery.ExtensionRouteUUID
			for id := range r.exts {
				ids = append(ids, id)
			}
			r.mu.Unlock()
			for _, id := range ids {
				ctx, cancel := context.WithTimeout(r.s.ctx, r.s.opts.ExtensionTimeout)
				err := r.withClient(ctx, id, func(c *osquery.ExtensionClient) error {
					_, err := c.Ping(ctx)
					return err
				})
				cancel()
				if r.s.ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				if e, ok := r.exts[id]; ok {
					if err == nil {
						e.failedPings = 0
					} else if e.failedPings++; e.failedPings >= 2 {
						// Two missed pings in a row: the extension is gone.
						r.s.log.Debug("extension ping failed", "uuid", id, "err", err)
						r.removeLocked(r.s.ctx, e)
					}
				}
				r.mu.Unlock()
			}
		}
	}()
}

// withClient dials an extension's own socket (<manager socket>.<uuid>).
func (r *extensionRegistry) withClient(ctx context.Context, id osquery.ExtensionRouteUUID, fn func(*osquery.ExtensionClient) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", r.socketFor(id))
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cfg := &thrift.TConfiguration{}
	trans := thrift.NewTBufferedTransport(thrift.NewTSocketFromConnConf(conn, cfg), 8192)
	client := osquery.NewExtensionClientFactory(trans, thrift.NewTBinaryProtocolFactoryConf(cfg))
	return fn(client)
}

// materialize refreshes every extension table that q names by calling the
// extension's generate action, as osqueryd would when SQLite scans the table.
func (r *extensionRegistry) materialize(ctx context.Context, q string) error {
	type target struct {
		id    osquery.ExtensionRouteUUID
		table extTable
	}
	var targets []target
	r.mu.Lock()
	for id, e := range r.exts {
		for _, t := range e.tables {
			if t.re.MatchString(q) {
				targets = append(targets, target{id, t})
			}
		}
	}
	r.mu.Unlock()
	for _, tg := range targets {
		rows, err := r.generate(ctx, tg.id, tg.table)
		if err != nil {
			return err
		}
		if err := r.s.db.replaceRows(ctx, tg.table.name, tg.table.cols, rows); err != nil {
			return &queryError{fmt.Sprintf("Error generating table %s: %v", tg.table.name, err)}
		}
	}
	return nil
}

func (r *extensionRegistry) generate(ctx context.Context, id osquery.ExtensionRouteUUID, t extTable) ([]map[string]string, error) {
	type constraint struct {
		Name     string `json:"name"`
		List     string `json:"list"`
		Affinity string `json:"affinity"`
	}
	qc := struct {
		Constraints []constraint `json:"constraints"`
	}{}
	for _, c := range t.cols {
		qc.Constraints = append(qc.Constraints, constraint{Name: c.name, List: "", Affinity: c.typ})
	}
	qctx, err := json.Marshal(qc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.s.opts.ExtensionTimeout)
	defer cancel()
	var resp *osquery.ExtensionResponse
	err = r.withClient(ctx, id, func(c *osquery.ExtensionClient) error {
		var err error
		resp, err = c.Call(ctx, "table", t.name, osquery.ExtensionPluginRequest{
			"action":  "generate",
			"context": string(qctx),
		})
		return err
	})
	if err != nil {
		// The extension may not be listening yet (it registers before it
		// opens its socket) or may have died; the watcher forgets dead ones.
		return nil, &queryError{fmt.Sprintf("Extension call failed for table %s: %v", t.name, err)}
	}
	if resp.GetStatus() != nil && resp.GetStatus().GetCode() != 0 {
		return nil, &queryError{resp.GetStatus().GetMessage()}
	}
	return resp.GetResponse(), nil
}

// Deregister drops every extension named name without telling it, as
// osqueryd does when it loses track of an extension whose socket still
// answers. It fails when no such extension is registered.
func (s *Server) Deregister(ctx context.Context, name string) error {
	r := s.ext
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.exts {
		if e.info.Name == name {
			r.removeLocked(ctx, e)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("deregister: no extension named %q is registered", name)
	}
	return nil
}
