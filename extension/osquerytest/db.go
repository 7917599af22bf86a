package osquerytest

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed fixtures/*.sql
var fixtureFS embed.FS

// queryError is a failed query, carrying osquery's status message.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

type column struct{ name, typ string }

// fixtureDB is one in-memory SQLite database on a single pinned connection,
// so every statement sees the same data; a mutex serialises access the way
// osqueryd's primary connection does.
type fixtureDB struct {
	mu   sync.Mutex
	db   *sql.DB
	conn *sql.Conn
}

func openFixtureDB(ctx context.Context, opts Options, start time.Time) (*fixtureDB, error) {
	if err := registerFunctions(); err != nil {
		return nil, err
	}
	// A private in-memory database per server, on one pinned connection.
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, fmt.Errorf("osquerytest: open sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("osquerytest: sqlite conn: %w", err)
	}
	f := &fixtureDB{db: db, conn: conn}
	script, err := fixtureScript(opts, start)
	if err != nil {
		f.close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, script); err != nil {
		f.close()
		return nil, fmt.Errorf("osquerytest: load %s fixtures: %s", opts.Platform, sqliteMessage(err))
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only = 1"); err != nil {
		f.close()
		return nil, fmt.Errorf("osquerytest: %w", err)
	}
	return f, nil
}

// fixtureScript is common.sql + <platform>.sql with the host's facts filled in.
func fixtureScript(opts Options, start time.Time) (string, error) {
	common, err := fixtureFS.ReadFile("fixtures/common.sql")
	if err != nil {
		return "", fmt.Errorf("osquerytest: %w", err)
	}
	plat, err := fixtureFS.ReadFile("fixtures/" + opts.Platform + ".sql")
	if err != nil {
		return "", fmt.Errorf("osquerytest: %w", err)
	}
	short := opts.Hostname
	if i := strings.IndexByte(short, '.'); i > 0 {
		short = short[:i]
	}
	r := strings.NewReplacer(
		"@HOSTNAME@", sqlEscape(opts.Hostname),
		"@SHORTNAME@", sqlEscape(short),
		"@UUID@", sqlEscape(opts.UUID),
		"@SERIAL@", sqlEscape(opts.Serial),
		"@DEVICE_ID@", sqlEscape(opts.EntraDeviceID),
		"@DEVICE_ID_UPPER@", sqlEscape(strings.ToUpper(opts.EntraDeviceID)),
		"@UPN@", sqlEscape(opts.UserPrincipalName),
		"@INSTANCE_ID@", sqlEscape(derivedUUID("instance:"+opts.UUID)),
		"@SOCKET@", sqlEscape(opts.SocketPath),
		"@VERSION@", Version,
		"@START_TIME@", strconv.FormatInt(start.Unix(), 10),
		"@PLATFORM@", opts.Platform,
	)
	return r.Replace(string(common)) + "\n" + r.Replace(string(plat)) + "\n" + opts.ExtraSQL, nil
}

// sqlEscape makes s safe inside a single-quoted SQL literal.
func sqlEscape(s string) string { return strings.ReplaceAll(s, "'", "''") }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (f *fixtureDB) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.conn != nil {
		err = f.conn.Close()
		f.conn = nil
	}
	if f.db != nil {
		if e := f.db.Close(); e != nil && err == nil {
			err = e
		}
		f.db = nil
	}
	return err
}

// exec runs trusted SQL with writes allowed.
func (f *fixtureDB) exec(ctx context.Context, q string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return errors.New("osquerytest: server closed")
	}
	if _, err := f.conn.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		return fmt.Errorf("osquerytest: %w", err)
	}
	_, err := f.conn.ExecContext(ctx, q, args...)
	if _, e := f.conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = 1"); e != nil && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("osquerytest: exec: %s", sqliteMessage(err))
	}
	return nil
}

// query runs read-only SQL and renders rows as osquery does: every value a
// string, NULL as "" (osquery's default --nullvalue), doubles with 15
// significant digits and always a decimal point.
func (f *fixtureDB) query(ctx context.Context, q string) ([]map[string]string, error) {
	if strings.TrimSpace(q) == "" {
		return []map[string]string{}, nil
	}
	if err := checkReadOnly(q); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil, &queryError{"database is closed"}
	}
	rows, err := f.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, translateQueryError(q, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, translateQueryError(q, err)
	}
	out := []map[string]string{}
	vals := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, translateQueryError(q, err)
		}
		row := make(map[string]string, len(names))
		for i, n := range names {
			row[n] = renderValue(vals[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, translateQueryError(q, err)
	}
	return out, nil
}

// queryColumns answers getQueryColumns: the declared type of table columns,
// and for expressions a type inferred from the first row's value (osqueryd
// derives it from the VDBE program; the common cases agree).
func (f *fixtureDB) queryColumns(ctx context.Context, q string) ([]column, error) {
	if strings.TrimSpace(q) == "" {
		// sqlite3_prepare_v2 yields no statement; osquery reports errmsg.
		return nil, &queryError{"not an error"}
	}
	if err := checkReadOnly(q); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil, &queryError{"database is closed"}
	}
	rows, err := f.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, translateQueryError(q, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, translateQueryError(q, err)
	}
	cols := make([]column, len(cts))
	unknown := false
	for i, ct := range cts {
		cols[i] = column{name: ct.Name(), typ: osqueryTypeName(ct.DatabaseTypeName())}
		if cols[i].typ == "UNKNOWN" {
			unknown = true
		}
	}
	if unknown && rows.Next() {
		vals := make([]any, len(cts))
		ptrs := make([]any, len(cts))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err == nil {
			for i, v := range vals {
				if cols[i].typ != "UNKNOWN" {
					continue
				}
				switch v.(type) {
				case int64:
					cols[i].typ = "INTEGER"
				case float64:
					cols[i].typ = "DOUBLE"
				case string:
					cols[i].typ = "TEXT"
				case []byte:
					cols[i].typ = "BLOB"
				}
			}
		}
	}
	return cols, nil
}

// osqueryTypeName maps a declared type to osquery's columnTypeName values.
func osqueryTypeName(decl string) string {
	switch strings.ToUpper(strings.TrimSpace(decl)) {
	case "TEXT":
		return "TEXT"
	case "INTEGER":
		return "INTEGER"
	case "BIGINT":
		return "BIGINT"
	case "UNSIGNED BIGINT":
		return "UNSIGNED BIGINT"
	case "DOUBLE":
		return "DOUBLE"
	case "BLOB":
		return "BLOB"
	}
	return "UNKNOWN"
}

func (f *fixtureDB) tableColumns(ctx context.Context, table string) ([]column, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil, errors.New("database is closed")
	}
	rows, err := f.conn.QueryContext(ctx, "SELECT name, type FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, err
		}
		c.typ = osqueryTypeName(c.typ)
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

func (f *fixtureDB) hasTable(ctx context.Context, table string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return false
	}
	var n int
	err := f.conn.QueryRowContext(ctx,
		"SELECT count(*) FROM sqlite_schema WHERE type IN ('table','view') AND name = ? COLLATE NOCASE", table).Scan(&n)
	return err == nil && n > 0
}

// replaceRows swaps the contents of an extension-backed table.
func (f *fixtureDB) replaceRows(ctx context.Context, table string, cols []column, rows []map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return errors.New("database is closed")
	}
	if _, err := f.conn.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		return err
	}
	defer f.conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = 1")
	if _, err := f.conn.ExecContext(ctx, "DELETE FROM "+quoteIdent(table)); err != nil {
		return err
	}
	if len(cols) == 0 {
		return nil
	}
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.name)
		marks[i] = "?"
	}
	ins := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", quoteIdent(table), strings.Join(names, ","), strings.Join(marks, ","))
	for _, r := range rows {
		args := make([]any, len(cols))
		for i, c := range cols {
			v, ok := r[c.name]
			switch {
			case !ok:
				args[i] = nil
			case c.typ == "TEXT" || c.typ == "BLOB" || c.typ == "UNKNOWN":
				args[i] = v
			default:
				args[i] = numericOrText(v)
			}
		}
		if _, err := f.conn.ExecContext(ctx, ins, args...); err != nil {
			return err
		}
	}
	return nil
}

func numericOrText(v string) any {
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	if fl, err := strconv.ParseFloat(v, 64); err == nil {
		return fl
	}
	return v
}

// renderValue formats a SQLite value like osquery's castVariant.
func renderValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		s := strconv.FormatFloat(x, 'g', 15, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		if x {
			return "1"
		}
		return "0"
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05")
	default:
		return fmt.Sprint(x)
	}
}

var (
	leadingNoise = regexp.MustCompile(`^(?s)(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*`)
	firstWord    = regexp.MustCompile(`^[A-Za-z]+`)
	dmlTarget    = regexp.MustCompile(`(?is)^\s*(?:insert|replace)\s+(?:or\s+\w+\s+)?into\s+([^\s(]+)|^\s*update\s+(?:or\s+\w+\s+)?([^\s]+)|^\s*delete\s+from\s+([^\s;]+)`)
)

// checkReadOnly rejects statements osqueryd would refuse. SELECT/WITH/VALUES/
// EXPLAIN run (query_only also catches writes hidden behind WITH). DML on a
// table fails later with osquery's "table X may not be modified"; schema
// changes, PRAGMA, ATTACH and transactions fail like osquery's authorizer
// denies them: "not authorized".
func checkReadOnly(q string) error {
	rest := leadingNoise.ReplaceAllString(q, "")
	w := strings.ToUpper(firstWord.FindString(rest))
	switch w {
	case "CREATE", "DROP", "ALTER", "PRAGMA", "ATTACH", "DETACH", "VACUUM", "REINDEX",
		"ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		return &queryError{"not authorized"}
	default:
		// SELECT/WITH/VALUES/EXPLAIN run; DML fails on query_only; anything
		// else is not SQL and SQLite reports the syntax error.
		return nil
	}
}

// translateQueryError turns a driver error into osquery's status message,
// which is SQLite's own sqlite3_errmsg text.
func translateQueryError(q string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY {
		rest := leadingNoise.ReplaceAllString(q, "")
		if m := dmlTarget.FindStringSubmatch(rest); m != nil {
			for _, t := range m[1:] {
				if t != "" {
					return &queryError{"table " + strings.Trim(t, `"'`+"`[]") + " may not be modified"}
				}
			}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &queryError{"interrupted"}
	}
	return &queryError{sqliteMessage(err)}
}

var codeSuffix = regexp.MustCompile(` \(\d+\)( \(SQLITE_BUSY\))?$`)

// sqliteMessage recovers sqlite3_errmsg from modernc's "<errstr>: <errmsg> (<rc>)".
func sqliteMessage(err error) string {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	msg := codeSuffix.ReplaceAllString(se.Error(), "")
	// SQLite's errstr texts contain no colon, so the first ": " ends it.
	if i := strings.Index(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// reset drops every table and view except keep and reloads the fixtures.
func (f *fixtureDB) reset(ctx context.Context, script string, keep map[string]bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return errors.New("osquerytest: server closed")
	}
	if _, err := f.conn.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		return fmt.Errorf("osquerytest: %w", err)
	}
	defer f.conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = 1")
	rows, err := f.conn.QueryContext(ctx, "SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		return fmt.Errorf("osquerytest: reset: %w", err)
	}
	var drops []string
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			rows.Close()
			return fmt.Errorf("osquerytest: reset: %w", err)
		}
		if !keep[name] {
			drops = append(drops, "DROP "+strings.ToUpper(typ)+" "+quoteIdent(name))
		}
	}
	rows.Close()
	for _, d := range drops {
		if _, err := f.conn.ExecContext(ctx, d); err != nil {
			return fmt.Errorf("osquerytest: reset: %w", err)
		}
	}
	if _, err := f.conn.ExecContext(ctx, script); err != nil {
		return fmt.Errorf("osquerytest: reset: reload fixtures: %s", sqliteMessage(err))
	}
	return nil
}
