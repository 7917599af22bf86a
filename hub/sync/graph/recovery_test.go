package graph

import (
	"net/url"
	"strings"
	"testing"

	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

// A custom cloud whose Graph base URL is a proxy (another host, port and
// path) must still ask Entra for a token for the Graph resource: Entra
// knows no resource named after the proxy (AADSTS500011).
func TestCustomCloudThroughProxyUsesGraphResource(t *testing.T) {
	e := newEnv(t, 1)
	px, err := standin.NewProxy(e.pair.CA, e.pair.Graph, "egress/graph", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	cfg := e.config()
	cfg.GraphBaseURL = px.URL()
	s := e.sink(t, cfg)
	out := s.apply(ctx(t), []change{{DeviceID: devID(1), Compliant: true}})
	if len(out) != 1 || out[0].Status != applied {
		t.Fatalf("outcome through proxy: %+v", out)
	}
	if px.Requests() == 0 {
		t.Fatal("the write did not go through the proxy")
	}
	if got := attr(t, e, devID(1)); got != "Compliant" {
		t.Fatalf("attribute = %q", got)
	}
	reqs := e.pair.Entra.TokenRequests()
	if len(reqs) == 0 || !strings.Contains(reqs[len(reqs)-1].Scope, "https://graph.microsoft.com/.default") {
		t.Fatalf("token scope: %+v", reqs)
	}
}

// An explicit resource the tenant does not know is reported as such, with
// the setting to change.
func TestUnknownGraphResourceSaysSo(t *testing.T) {
	e := newEnv(t, 1)
	cfg := e.config()
	cfg.GraphResource = "https://graph.example.invalid"
	s := e.sink(t, cfg)
	rep := s.TestConnection(ctx(t))
	if rep.OK || rep.Health != HealthResourceNotFound || !strings.Contains(strings.Join(rep.Problems, " "), "graph-resource") {
		t.Fatalf("report %+v", rep)
	}
}

// National clouds name their resource apart from their base URL.
func TestKnownCloudResources(t *testing.T) {
	for c, want := range map[Cloud]string{
		CloudPublic: "https://graph.microsoft.com", CloudUSGov: "https://graph.microsoft.us",
		CloudUSGovDoD: "https://dod-graph.microsoft.us", CloudChina: "https://microsoftgraph.chinacloudapi.cn",
	} {
		ep, ok := KnownEndpoints(c)
		if !ok || ep.GraphResource != want {
			t.Errorf("%s: resource %q, want %q", c, ep.GraphResource, want)
		}
	}
	cfg := Config{Cloud: CloudCustom, AuthorityHost: "https://login.example/", GraphBaseURL: "https://proxy.example/graph/v1.0"}
	ep, err := cfg.endpoints()
	if err != nil || ep.GraphResource != "https://graph.microsoft.com" {
		t.Fatalf("custom default resource %q (%v)", ep.GraphResource, err)
	}
}

// A 401 InvalidAuthenticationToken drops the cached token and retries once
// with a new one.
func TestGraph401RefreshesToken(t *testing.T) {
	e := newEnv(t, 2)
	s := e.sink(t, e.config())
	if out := s.apply(ctx(t), []change{{DeviceID: devID(1), Compliant: true}}); out[0].Status != applied {
		t.Fatalf("first write %+v", out)
	}
	reqs := e.pair.Graph.Requests()
	first := reqs[len(reqs)-1].Token
	e.pair.Graph.RejectToken(first)
	out := s.apply(ctx(t), []change{{DeviceID: devID(2), Compliant: false}})
	if out[0].Status != applied {
		t.Fatalf("write after 401: %+v", out)
	}
	reqs = e.pair.Graph.Requests()
	last, prev := reqs[len(reqs)-1], reqs[len(reqs)-2]
	if prev.Token != first || last.Token == first || last.Token == "" {
		t.Fatalf("the retry after the 401 must carry a new token (rejected %.12s…, retried with %.12s…)", prev.Token, last.Token)
	}
	// Once only: a token Entra keeps issuing but Graph keeps rejecting fails.
	n := len(e.pair.Entra.TokenRequests())
	e.pair.Graph.SetResource("https://graph.example.invalid") // every token now fails at Graph
	out = s.apply(ctx(t), []change{{DeviceID: devID(1), Compliant: false}})
	if out[0].Status != failed || out[0].Health != HealthAuthFailed {
		t.Fatalf("repeated 401: %+v", out)
	}
	if got := len(e.pair.Entra.TokenRequests()) - n; got != 1 {
		t.Fatalf("token requests after repeated 401: %d, want 1", got)
	}
}

// Every SDK call keeps its query options on the wire: the connection
// test's device list ($top, $select) and every read ($select).
func TestQueryOptionsOnTheWire(t *testing.T) {
	e := newEnv(t, 3)
	e.pair.Entra.SetPermissions(clientID, standin.PermDeviceReadWriteAll, standin.PermApplicationReadAll)
	cfg := e.config()
	cfg.WindowsMDM = true
	s := e.sink(t, cfg)
	if rep := s.TestConnection(ctx(t)); !rep.OK {
		t.Fatalf("test connection: %+v", rep)
	}
	if _, err := s.Read(ctx(t), []string{devID(1), devID(2)}); err != nil {
		t.Fatal(err)
	}
	s.apply(ctx(t), []change{{DeviceID: devID(3), Compliant: true}})
	var list int
	for _, r := range e.pair.Graph.Requests() {
		if r.Method != "GET" {
			continue
		}
		q, _ := url.ParseQuery(r.RawQuery)
		if q.Get("$select") == "" {
			t.Errorf("GET %s went out without $select (query %q)", r.Path, r.RawQuery)
		}
		if strings.HasSuffix(r.Path, "/devices") {
			list++
			if q.Get("$top") != "1" {
				t.Errorf("device list went out with $top=%q, want 1", q.Get("$top"))
			}
		}
	}
	if list != 1 {
		t.Fatalf("device list requests: %d", list)
	}
}

// Session revocation goes to POST /users/{upn}/revokeSignInSessions, only
// with User.RevokeSessions.All in the token; the test connection says
// whether the permission is there; a missing permission or user is about
// that change only, not the integration's health.
func TestRevokeSessions(t *testing.T) {
	e := newEnv(t, 1)
	u := e.pair.Graph.AddUser(standin.DirectoryUser{UserPrincipalName: "ada@example.com"})
	s := e.sink(t, e.config())
	rev := func(upn string) hubsync.Outcome {
		t.Helper()
		out := s.Apply(ctx(t), []hubsync.Change{{DeviceID: devID(1), Desired: hubsync.DesiredNoncompliant, Kind: hubsync.KindRevokeSessions, Subject: upn}})
		return out[0]
	}
	if rep := s.TestConnection(ctx(t)); !rep.OK || rep.RevokeSessions {
		t.Fatalf("report without the permission: %+v", rep)
	}
	if o := rev(u.UserPrincipalName); o.Kind != hubsync.OutcomePermanent || o.Code != "permission_missing" || !strings.Contains(o.Message, "User.RevokeSessions.All") {
		t.Fatalf("without permission: %+v", o)
	}
	if h := s.Health(); h.Health != HealthOK {
		t.Fatalf("a missing revoke permission changed the integration's health: %+v", h)
	}
	e.pair.Entra.SetPermissions(clientID, standin.PermDeviceReadWriteAll, standin.PermUserRevokeSessionsAll)
	s = e.sink(t, e.config()) // a new token carries the new role
	if rep := s.TestConnection(ctx(t)); !rep.OK || !rep.RevokeSessions {
		t.Fatalf("report with the permission: %+v", rep)
	}
	if o := rev(u.UserPrincipalName); o.Kind != hubsync.OutcomeOK {
		t.Fatalf("revoke: %+v", o)
	}
	if o := rev("nobody@example.com"); o.Kind != hubsync.OutcomePermanent || o.Code != "user_not_found" {
		t.Fatalf("unknown user: %+v", o)
	}
	if r := e.pair.Graph.Revocations(); len(r) != 1 || r[0].UserID != u.ID {
		t.Fatalf("revocations %+v", r)
	}
	if e.pair.Graph.Stats().Requests == 0 || len(e.pair.Graph.Writes()) != 0 {
		t.Fatalf("a revocation wrote the device: %+v", e.pair.Graph.Writes())
	}
}
