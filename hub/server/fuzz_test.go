package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/posture-dev/posture/hub/server"
)

// fuzzRoutes are the admin REST routes that take a JSON body.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/policies:apply"},
	{"PUT", "/api/v1/teams/fuzz"},
	{"PATCH", "/api/v1/teams/fuzz"},
	{"POST", "/api/v1/exemptions"},
	{"POST", "/api/v1/enroll-secrets"},
	{"POST", "/api/v1/tokens"},
	{"POST", "/api/v1/integrations"},
	{"PATCH", "/api/v1/integrations/fuzz"},
	{"POST", "/api/v1/hosts/fuzz:revoke"},
	{"POST", "/api/v1/hosts/fuzz:setEntraDeviceId"},
	{"POST", "/api/v1/hosts/fuzz:recheck"},
	{"POST", "/api/v1/sync/items/fuzz:retry"},
}

// FuzzAdminJSON posts arbitrary bodies to every admin REST route that takes
// one, through the real HTTP listener, gateway and TLS gRPC server, as an
// admin. Whatever the body, the answer is a JSON error or success, never a
// 5xx (none is documented for bad input) and never a crash. The seed
// corpus (testdata/fuzz/FuzzAdminJSON plus the seeds below) runs as a
// normal test.
//
//	go test ./hub/server -run XXX -fuzz FuzzAdminJSON -fuzztime 60s
func FuzzAdminJSON(f *testing.F) {
	for i := range fuzzRoutes {
		f.Add(uint8(i), []byte(`{}`))
	}
	f.Add(uint8(0), []byte(`{"policies":[{"id":"p","name":"P","query":"SELECT 1;","severity":"low","platforms":["linux"]}],"dryRun":true}`))
	f.Add(uint8(1), []byte(`{"settings":{"conditionalAccess":true,"maxAllowedSeverity":"","errorsAsFailures":false,"staleAfter":"0s"}}`))
	f.Add(uint8(2), []byte(`{"settings":{"staleAfter":"-5s"}}`))
	f.Add(uint8(2), []byte(`{"settings":{"conditonalAccess":false}}`))
	f.Add(uint8(3), []byte(`{"hostId":"h","reason":"r","expiresAt":"9999-12-31T23:59:59Z"}`))
	f.Add(uint8(5), []byte(`{"name":"n","role":"root"}`))
	f.Add(uint8(6), []byte(`{"name":"g","kind":"graph","cloud":"custom","authorityHost":"http://[::1","clientSecret":"x","certificate":"!!"}`))
	f.Add(uint8(9), []byte(`{"entraDeviceId":"\u0000"}`))
	f.Add(uint8(0), []byte(`[1,2,3]`))
	f.Add(uint8(0), []byte("\xff\xfe"))

	q := startQuickHub(f, server.Config{})
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req, err := http.NewRequest(r.method, q.base+r.path, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+q.admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, resp.StatusCode, b)
		}
		if !json.Valid(b) {
			t.Fatalf("%s %s %q: %d, body is not JSON: %q", r.method, r.path, body, resp.StatusCode, b)
		}
	})
}
