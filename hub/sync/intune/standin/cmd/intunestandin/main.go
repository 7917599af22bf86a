// Command intunestandin runs an Entra ID stand-in and the Intune
// compliance-partner stand-in as one process, for the demo and
// out-of-process checks. It prints one JSON line describing the endpoints,
// then serves until interrupted.
//
//	intunestandin --client-id ID --client-secret S --users alex@contoso.com=OID \
//	  --groups GID="Posture devices" --ca-out ca.pem
//
// Create an intune-partner integration with cloud "custom", the printed
// authority and graph_base_url, and the CA file as extra CA. GET
// <graph_root>/_standin/state shows activation, heartbeat, policies and
// every processed compliance upload.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	graphstandin "github.com/posture-dev/posture/hub/sync/graph/standin"
	"github.com/posture-dev/posture/hub/sync/intune/standin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "intunestandin:", err)
		os.Exit(1)
	}
}

// pairs parses "k=v,k=v".
func pairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out, nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("intunestandin", flag.ContinueOnError)
	entraAddr := fs.String("entra-addr", "127.0.0.1:0", "listen address of the Entra stand-in")
	intuneAddr := fs.String("intune-addr", "127.0.0.1:0", "listen address of the Intune/Graph stand-in")
	tenant := fs.String("tenant", graphstandin.DefaultTenant, "tenant id")
	clientID := fs.String("client-id", "", "client id of the onboarded partner app (required)")
	clientSecret := fs.String("client-secret", "", "client secret of the partner app (required)")
	platforms := fs.String("platforms", "macOS,windows10", "platforms registered for the partner (macOS, windows10, iOS, android)")
	users := fs.String("users", "", "directory users: upn=objectId,...")
	groups := fs.String("groups", "", "groups: objectId=displayName,...")
	members := fs.String("members", "", "group members: groupId=deviceId|upn|groupId,...")
	caOut := fs.String("ca-out", "", "write the stand-ins' CA certificate (PEM) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clientID == "" || *clientSecret == "" {
		return fmt.Errorf("--client-id and --client-secret are required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pair, err := graphstandin.Start(graphstandin.Options{Tenant: *tenant, EntraAddr: *entraAddr, Log: log})
	if err != nil {
		return err
	}
	defer pair.Close()
	pair.Entra.RegisterApp(graphstandin.App{ClientID: *clientID, Secrets: []graphstandin.Secret{{Value: *clientSecret}}})
	in, err := standin.New(pair.CA, pair.Entra, standin.Options{PartnerClientID: *clientID, Platforms: strings.Split(*platforms, ","), Addr: *intuneAddr, Log: log})
	if err != nil {
		return err
	}
	defer in.Close()
	us, err := pairs(*users)
	if err != nil {
		return fmt.Errorf("--users: %w", err)
	}
	for upn, id := range us {
		in.AddUser(upn, id)
	}
	gs, err := pairs(*groups)
	if err != nil {
		return fmt.Errorf("--groups: %w", err)
	}
	for id, name := range gs {
		in.AddGroup(strings.ToLower(id), name)
	}
	for _, kv := range strings.Split(*members, ",") {
		g, m, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		g = strings.ToLower(g)
		switch {
		case strings.Contains(m, "@"):
			in.AddMember(g, standin.Member{UPN: m})
		case gs[m] != "" || gs[strings.ToLower(m)] != "":
			in.AddMember(g, standin.Member{GroupID: strings.ToLower(m)})
		default:
			in.AddMember(g, standin.Member{DeviceID: strings.ToLower(m)})
		}
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, pair.CA.CertPEM(), 0o644); err != nil {
			return err
		}
	}
	line, _ := json.Marshal(map[string]string{"authority": pair.Entra.URL(), "graph_base_url": in.GraphBaseURL(),
		"state": in.URL() + "/_standin/state", "tenant": pair.Entra.Tenant(), "client_id": *clientID, "ca_file": *caOut})
	fmt.Println(string(line))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
