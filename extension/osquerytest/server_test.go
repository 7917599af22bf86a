package osquerytest

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	osquery "github.com/osquery/osquery-go"
	"github.com/osquery/osquery-go/plugin/table"
)

// shortSocket returns a unix socket path short enough for sun_path plus
// osquery-go's ".<uuid>" extension suffix.
func shortSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "em")
}

func startServer(t *testing.T, platform string, mod ...func(*Options)) *Server {
	t.Helper()
	opts := Options{Platform: platform, SocketPath: shortSocket(t)}
	for _, m := range mod {
		m(&opts)
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start(%s): %v", platform, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newClient(t *testing.T, s *Server, timeout time.Duration) *osquery.ExtensionManagerClient {
	t.Helper()
	c, err := osquery.NewClient(s.SocketPath(), timeout)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestPingAndFacts(t *testing.T) {
	s := startServer(t, "darwin", func(o *Options) {
		o.Hostname = "kiosk-7.example.com"
		o.UUID = "0b9f1e2a-1111-4c2d-8e3f-4a5b6c7d8e9f"
		o.Serial = "C02TEST123"
	})
	c := newClient(t, s, 5*time.Second)
	st, err := c.Ping()
	if err != nil || st.Code != 0 {
		t.Fatalf("Ping = %+v, %v", st, err)
	}
	row, err := c.QueryRow("SELECT hostname, uuid, hardware_serial, computer_name FROM system_info")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hostname": "kiosk-7.example.com", "uuid": "0B9F1E2A-1111-4C2D-8E3F-4A5B6C7D8E9F",
		"hardware_serial": "C02TEST123", "computer_name": "kiosk-7",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("system_info.%s = %q, want %q", k, row[k], v)
		}
	}
	row, err = c.QueryRow("SELECT uuid, version FROM osquery_info")
	if err != nil {
		t.Fatal(err)
	}
	if row["uuid"] != s.UUID() || row["version"] != Version {
		t.Errorf("osquery_info = %v", row)
	}
}

func TestPassFailAndExec(t *testing.T) {
	s := startServer(t, "darwin")
	c := newClient(t, s, 5*time.Second)
	const policy = "SELECT 1 FROM disk_encryption WHERE user_uuid IS NOT '' AND filevault_status = 'on' LIMIT 1;"
	rows, err := c.QueryRows(policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["1"] != "1" {
		t.Fatalf("healthy host: rows = %v, want one row {1:1}", rows)
	}
	if err := s.Exec(context.Background(), "UPDATE disk_encryption SET filevault_status = ?", "off"); err != nil {
		t.Fatal(err)
	}
	rows, err = c.QueryRows(policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Fatalf("after FileVault off: rows = %v, want none", rows)
	}
}

// TestErrorTexts checks the status messages osqueryd sends: SQLite's own
// sqlite3_errmsg with status code 1 (osquery/sql/sqlite_util.cpp).
func TestErrorTexts(t *testing.T) {
	s := startServer(t, "darwin")
	c := newClient(t, s, 5*time.Second)
	cases := []struct{ sql, msg string }{
		{"SELECT * FROM bitlocker_info", "no such table: bitlocker_info"},
		{"SELECT * FROM deb_packages WHERE name = 'x'", "no such table: deb_packages"},
		{"SELEC 1", `near "SELEC": syntax error`},
		{"SELECT nope FROM alf", "no such column: nope"},
		{"SELECT 1 FROM", "incomplete input"},
		{"UPDATE alf SET global_state = 0", "table alf may not be modified"},
		{"DELETE FROM sip_config", "table sip_config may not be modified"},
		{"INSERT INTO users (uid, username) VALUES (0, 'toor')", "table users may not be modified"},
		{"CREATE TABLE evil (a)", "not authorized"},
		{"ATTACH DATABASE '/tmp/x.db' AS x", "not authorized"},
		{"PRAGMA writable_schema = 1", "not authorized"},
		{"SELECT version_compare('1', '2', 'BOGUS')", "Invalid version compare flavor: BOGUS"},
	}
	for _, tc := range cases {
		resp, err := c.Query(tc.sql)
		if err != nil {
			t.Fatalf("%s: transport error %v", tc.sql, err)
		}
		if resp.Status.Code != 1 || resp.Status.Message != tc.msg {
			t.Errorf("%s: status = {%d %q}, want {1 %q}", tc.sql, resp.Status.Code, resp.Status.Message, tc.msg)
		}
		if len(resp.Response) != 0 {
			t.Errorf("%s: error response carries rows %v", tc.sql, resp.Response)
		}
	}
	// The refused writes changed nothing.
	row, err := c.QueryRow("SELECT global_state FROM alf")
	if err != nil || row["global_state"] != "1" {
		t.Errorf("alf after refused UPDATE = %v, %v", row, err)
	}
	if _, err := c.QueryRows("SELECT * FROM evil"); err == nil || !strings.Contains(err.Error(), "no such table: evil") {
		t.Errorf("CREATE TABLE should not have run: %v", err)
	}
	// The osquery-go helper surfaces the message.
	if _, err := c.QueryRows("SELECT * FROM alf_nope"); err == nil || err.Error() != "query returned error: no such table: alf_nope" {
		t.Errorf("QueryRows error = %v", err)
	}
}

func TestPlatformsHaveOnlyTheirTables(t *testing.T) {
	own := map[string][]string{
		"darwin":  {"alf", "sip_config", "gatekeeper", "screenlock", "apps", "managed_policies", "plist", "launchd", "disk_encryption"},
		"windows": {"bitlocker_info", "windows_security_center", "windows_security_products", "programs", "registry", "services", "security_profile_info", "tpm_info"},
		"linux":   {"deb_packages", "rpm_packages", "mounts", "augeas", "iptables", "shadow", "disk_encryption", "systemd_units"},
	}
	common := []string{"os_version", "osquery_info", "system_info", "users", "processes", "time", "uptime", "osquery_extensions"}
	for _, p := range Platforms() {
		s := startServer(t, p)
		c := newClient(t, s, 5*time.Second)
		for _, tbl := range append(append([]string{}, common...), own[p]...) {
			if _, err := c.QueryRows("SELECT * FROM " + tbl); err != nil {
				t.Errorf("%s: SELECT * FROM %s: %v", p, tbl, err)
			}
		}
		for other, tables := range own {
			if other == p {
				continue
			}
			for _, tbl := range tables {
				if contains(own[p], tbl) {
					continue
				}
				resp, err := c.Query("SELECT * FROM " + tbl)
				if err != nil {
					t.Fatal(err)
				}
				if want := "no such table: " + tbl; resp.Status.Message != want {
					t.Errorf("%s: %s status = %q, want %q", p, tbl, resp.Status.Message, want)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestGetQueryColumns(t *testing.T) {
	s := startServer(t, "windows")
	c := newClient(t, s, 5*time.Second)
	resp, err := c.GetQueryColumns("SELECT drive_letter, protection_status, 1 AS one, 'x' AS lit FROM bitlocker_info")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Code != 0 {
		t.Fatalf("status %+v", resp.Status)
	}
	want := []map[string]string{
		{"drive_letter": "TEXT"}, {"protection_status": "INTEGER"}, {"one": "INTEGER"}, {"lit": "TEXT"},
	}
	if fmt.Sprint(resp.Response) != fmt.Sprint(want) {
		t.Errorf("columns = %v, want %v", resp.Response, want)
	}
	resp, err = c.GetQueryColumns("SELECT * FROM alf")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Code != 1 || resp.Status.Message != "no such table: alf" {
		t.Errorf("status = %+v, want no such table: alf", resp.Status)
	}
	// getQueryColumns must not be a write path either.
	resp, err = c.GetQueryColumns("DELETE FROM registry")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Code != 1 {
		t.Errorf("DELETE via getQueryColumns: %+v", resp.Status)
	}
	n, err := c.QueryRows("SELECT * FROM registry")
	if err != nil || len(n) == 0 {
		t.Errorf("registry rows after refused DELETE: %d, %v", len(n), err)
	}
}

func TestSQLFunctionsAndLiterals(t *testing.T) {
	s := startServer(t, "linux")
	c := newClient(t, s, 5*time.Second)
	cases := []struct{ sql, col, want string }{
		{`SELECT version_compare('1.0', '1.0') AS v`, "v", "0"},
		{`SELECT version_compare('50.4.1b', '50.4.1c') AS v`, "v", "-1"},
		{`SELECT version_compare('10.0.22631', '10.0.19045') AS v`, "v", "1"},
		{`SELECT version_compare('15.10', '15.9') AS v`, "v", "1"},
		{`SELECT version_compare('4:1.1.0', '4:1.1.0-3', 'ARCH') AS v`, "v", "0"},
		{`SELECT version_compare('1.0.0~rc2^2021', '1.0.0', 'RHEL') AS v`, "v", "-1"},
		{`SELECT version_compare('1:1.2.13-2', '4.2.1', 'ARCH') AS v`, "v", "1"},
		{`SELECT version_compare('1:9.6p1-3ubuntu13.14', '1:9.6p1-3ubuntu13.3', 'DPKG') AS v`, "v", "1"},
		{`SELECT version_compare('22.07.5-2ubuntu1.3', '22.07.5-2ubuntu1.4', 'dpkg') AS v`, "v", "-1"},
		{`SELECT regex_match('hello world. Goodbye', '(\w+) \w+', 1) AS v`, "v", "hello"},
		{`SELECT split('192.168.0.1', '.', 1) AS v`, "v", "168"},
		{`SELECT split('1001', '1', 0) AS v`, "v", "00"},
		{`SELECT regex_split('a1b22c', '[0-9]+', 2) AS v`, "v", "c"},
		{`SELECT "double quoted" AS v`, "v", "double quoted"},
		{`SELECT count(*) AS v FROM os_version WHERE name = "Ubuntu"`, "v", "1"},
		{`SELECT 1.0 AS v`, "v", "1.0"},
		{`SELECT 0.1 + 0.2 AS v`, "v", "0.3"},
		{`SELECT NULL AS v`, "v", ""},
	}
	for _, tc := range cases {
		row, err := c.QueryRow(tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if row[tc.col] != tc.want {
			t.Errorf("%s = %q, want %q", tc.sql, row[tc.col], tc.want)
		}
	}
}

func TestVersionCompareUnit(t *testing.T) {
	cases := []struct {
		a, b   string
		flavor string
		want   int
	}{
		{"15.7.2", "15.6", "", 1},
		{"15.6", "15.6", "", 0},
		{"14.7.1", "15.6", "", -1},
		{"5.19.0", "5.12.0", "", 1},
		{"20.10a", "20.102", "", 1},
		{"2-2pre", "2-2rc", "ARCH", -1},
		{"42.2-1", "42.1-2", "ARCH", 1},
		{"1:2.0-10", "1:2.0-10", "DPKG", 0},
		{"2:8.2.3995-1ubuntu2.9", "2:8.2.3995-1ubuntu2.3", "DPKG", 1},
		{"1.1.0~BETA2", "1.1.0~CR1", "RHEL", -1},
		{"1.0.0", "1.0.0~rc2", "RHEL", 1},
		{"", "1", "", -1},
		// osquery's quirk, reproduced on purpose: when one version ends inside
		// a segment that differs, the longer string wins.
		{"15.3.2", "15.6", "", 1},
		{"15.10", "15.6", "", 1},
	}
	for _, tc := range cases {
		args := []any{tc.a, tc.b}
		if tc.flavor != "" {
			args = append(args, tc.flavor)
		}
		got, err := sqlVersionCompareAny(args)
		if err != nil {
			t.Fatal(err)
		}
		if got != int64(tc.want) {
			t.Errorf("version_compare(%q, %q, %q) = %v, want %d", tc.a, tc.b, tc.flavor, got, tc.want)
		}
	}
}

func sqlVersionCompareAny(args []any) (driver.Value, error) {
	dv := make([]driver.Value, len(args))
	for i, a := range args {
		dv[i] = a
	}
	return sqlVersionCompare(nil, dv)
}

func TestExtensionTable(t *testing.T) {
	s := startServer(t, "darwin")
	c := newClient(t, s, 5*time.Second)

	upn := "jamie@contoso.com"
	ext, err := osquery.NewExtensionManagerServer("posture", s.SocketPath(), osquery.ServerTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ext.RegisterPlugin(table.NewPlugin("posture_entra",
		[]table.ColumnDefinition{table.TextColumn("device_id"), table.TextColumn("user_principal_name"), table.TextColumn("source")},
		func(ctx context.Context, qc table.QueryContext) ([]map[string]string, error) {
			return []map[string]string{{"device_id": s.EntraDeviceID(), "user_principal_name": upn, "source": "platform_sso"}}, nil
		}))
	errc := make(chan error, 1)
	go func() { errc <- ext.Start() }()

	// Registration is asynchronous; poll until the table answers.
	var rows []map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err = c.QueryRows("SELECT device_id, user_principal_name FROM posture_entra WHERE source = 'platform_sso'")
		if err == nil && len(rows) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("extension table never answered: rows=%v err=%v", rows, err)
		}
		select {
		case err := <-errc:
			t.Fatalf("extension server stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if rows[0]["device_id"] != s.EntraDeviceID() || rows[0]["user_principal_name"] != upn {
		t.Errorf("posture_entra = %v", rows)
	}
	if got := s.Extensions(); len(got) != 1 {
		t.Errorf("Extensions() = %v, want one", got)
	}
	resp, err := c.GetQueryColumns("SELECT * FROM posture_entra")
	if err != nil || resp.Status.Code != 0 || len(resp.Response) != 3 {
		t.Errorf("getQueryColumns(posture_entra) = %+v, %v", resp, err)
	}
	ext2, err := osquery.NewExtensionManagerServer("posture", s.SocketPath(), osquery.ServerTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := ext2.Start(); err == nil || !strings.Contains(err.Error(), "Duplicate extension registered") {
		t.Errorf("second registration with the same name: %v", err)
	}

	// A silent drop: osqueryd forgets the extension but nothing tells it.
	if err := s.Deregister(context.Background(), "nope"); err == nil {
		t.Error("Deregister of an unknown name succeeded")
	}
	if err := s.Deregister(context.Background(), "posture"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Extensions(); err != nil || len(got) != 0 {
		t.Errorf("extensions() after a silent drop = %v, %v", got, err)
	}
	resp, err = c.Query("SELECT * FROM posture_entra")
	if err != nil || resp.Status.Message != "no such table: posture_entra" {
		t.Errorf("after a silent drop: %+v, %v", resp.GetStatus(), err)
	}
	select {
	case err := <-errc:
		t.Fatalf("a silent drop stopped the extension's server: %v", err)
	default:
	}
	_ = ext.Shutdown(context.Background()) // its deregister call fails: already gone
	<-errc
	deadline = time.Now().Add(10 * time.Second)

	// Registered again, then gone for good on a clean shutdown.
	ext, err = osquery.NewExtensionManagerServer("posture", s.SocketPath(), osquery.ServerTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ext.RegisterPlugin(table.NewPlugin("posture_entra", []table.ColumnDefinition{table.TextColumn("device_id")},
		func(ctx context.Context, qc table.QueryContext) ([]map[string]string, error) { return nil, nil }))
	go func() { errc <- ext.Start() }()
	for len(s.Extensions()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("registering again after a silent drop: never listed")
		}
		select {
		case err := <-errc:
			t.Fatalf("registering again after a silent drop: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := ext.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	resp, err = c.Query("SELECT * FROM posture_entra")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Message != "no such table: posture_entra" {
		t.Errorf("after deregistration: %+v", resp.Status)
	}
}

func TestDelayTimesOutClient(t *testing.T) {
	s := startServer(t, "linux")
	s.SetDelay(time.Hour)
	slow := newClient(t, s, 200*time.Millisecond)
	if _, err := slow.QueryRows("SELECT 1"); err == nil {
		t.Fatal("query answered despite the delay; want a client timeout")
	}
	s.SetDelay(0)
	c := newClient(t, s, 5*time.Second)
	if rows, err := c.QueryRows("SELECT 1 AS x"); err != nil || len(rows) != 1 {
		t.Fatalf("after SetDelay(0): %v, %v", rows, err)
	}
}

func TestHang(t *testing.T) {
	s := startServer(t, "windows")
	s.SetHang(true)
	stuck := newClient(t, s, 200*time.Millisecond)
	if _, err := stuck.Ping(); err == nil {
		t.Fatal("ping answered while hung")
	}
	s.SetHang(false)
	c := newClient(t, s, 5*time.Second)
	if st, err := c.Ping(); err != nil || st.Code != 0 {
		t.Fatalf("ping after SetHang(false): %v %v", st, err)
	}
}

func TestManyHostsAtOnce(t *testing.T) {
	var servers []*Server
	for i := 0; i < 5; i++ {
		i := i
		servers = append(servers, startServer(t, Platforms()[i%3], func(o *Options) { o.Hostname = fmt.Sprintf("host-%d", i) }))
	}
	seen := map[string]bool{}
	for i, s := range servers {
		c := newClient(t, s, 5*time.Second)
		row, err := c.QueryRow("SELECT hostname, uuid FROM system_info")
		if err != nil {
			t.Fatal(err)
		}
		if row["hostname"] != fmt.Sprintf("host-%d", i) {
			t.Errorf("server %d hostname %q", i, row["hostname"])
		}
		if seen[row["uuid"]] {
			t.Errorf("duplicate uuid %s", row["uuid"])
		}
		seen[row["uuid"]] = true
	}
	// Changing one host leaves the others alone.
	if err := servers[0].Exec(context.Background(), "UPDATE system_info SET hostname = 'renamed'"); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, servers[3], 5*time.Second)
	if row, _ := c.QueryRow("SELECT hostname FROM system_info"); row["hostname"] != "host-3" {
		t.Errorf("host-3 changed: %v", row)
	}
}

func TestControlHandler(t *testing.T) {
	s := startServer(t, "windows")
	ts := httptest.NewServer(s.ControlHandler())
	defer ts.Close()

	res, err := http.Get(ts.URL + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()

	post := func(path, body string) (int, string) {
		res, err := http.Post(ts.URL+path, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := post("/exec", "UPDATE bitlocker_info SET protection_status = 0"); code != 204 {
		t.Fatalf("exec: %d %s", code, body)
	}
	c := newClient(t, s, 5*time.Second)
	rows, err := c.QueryRows("SELECT 1 FROM bitlocker_info WHERE protection_status = 1")
	if err != nil || len(rows) != 0 {
		t.Errorf("after /exec: %v %v", rows, err)
	}
	if code, body := post("/exec", "UPDATE nope SET x = 1"); code != 400 || !strings.Contains(body, "no such table: nope") {
		t.Errorf("bad exec: %d %q", code, body)
	}
	if code, body := post("/query", "SELECT drive_letter FROM bitlocker_info"); code != 200 || !strings.Contains(body, `"drive_letter":"C:"`) {
		t.Errorf("query: %d %q", code, body)
	}
	if code, _ := post("/delay?d=bogus", ""); code != 400 {
		t.Errorf("bad delay accepted: %d", code)
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	sock := shortSocket(t)
	s, err := Start(context.Background(), Options{Platform: "linux", SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	c, err := osquery.NewClient(sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := c.QueryRows("SELECT 1"); err == nil {
		t.Error("query succeeded on a closed server")
	}
	if _, err := Start(context.Background(), Options{Platform: "solaris", SocketPath: sock}); err == nil {
		t.Error("unknown platform accepted")
	}
}

func TestExtraSQL(t *testing.T) {
	s := startServer(t, "darwin", func(o *Options) {
		o.ExtraSQL = "UPDATE alf SET stealth_enabled = 0;\nINSERT INTO apps (name, path, bundle_identifier) VALUES ('Zoom.app', '/Applications/zoom.us.app', 'us.zoom.xos');"
	})
	c := newClient(t, s, 5*time.Second)
	check := func(when string) {
		t.Helper()
		row, err := c.QueryRow("SELECT stealth_enabled, (SELECT count(*) FROM apps WHERE bundle_identifier = 'us.zoom.xos') AS zoom FROM alf")
		if err != nil {
			t.Fatal(err)
		}
		if row["stealth_enabled"] != "0" || row["zoom"] != "1" {
			t.Errorf("%s: %v", when, row)
		}
	}
	check("at start")
	if err := s.Exec(context.Background(), "DELETE FROM apps"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after Reset")
	if _, err := Start(context.Background(), Options{Platform: "linux", SocketPath: shortSocket(t), ExtraSQL: "UPDATE nope SET x = 1"}); err == nil || !strings.Contains(err.Error(), "no such table: nope") {
		t.Errorf("bad ExtraSQL: %v", err)
	}
}

// BenchmarkStart measures what one more fake host costs (the load generator
// runs many).
func BenchmarkStart(b *testing.B) {
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for i := 0; b.Loop(); i++ {
		s, err := Start(context.Background(), Options{Platform: Platforms()[i%3], SocketPath: filepath.Join(dir, fmt.Sprintf("s%d", i))})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkPolicyQuery measures one policy query over the socket.
func BenchmarkPolicyQuery(b *testing.B) {
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := Start(context.Background(), Options{Platform: "darwin", SocketPath: filepath.Join(dir, "em")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := osquery.NewClient(s.SocketPath(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		rows, err := c.QueryRows("SELECT 1 FROM disk_encryption WHERE user_uuid IS NOT '' AND filevault_status = 'on' LIMIT 1;")
		if err != nil || len(rows) != 1 {
			b.Fatal(rows, err)
		}
	}
}
