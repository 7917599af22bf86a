// Command msstandin runs the Entra ID and Microsoft Graph stand-ins as a
// process, for the demo and for out-of-process tests. It prints one JSON
// line describing the endpoints, then serves until interrupted.
//
//	msstandin --client-id ID --client-secret S --devices id1,id2 --ca-out ca.pem
//
// Point a "custom" cloud integration at the printed authority and graph
// URLs with the CA file as the extra trusted CA. GET <graph_root>/_standin/devices
// shows every device and its extension attributes; /_standin/writes lists
// writes; POST/DELETE /_standin/faults injects or clears faults; POST
// <authority>/_standin/apps registers or replaces an app.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "msstandin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("msstandin", flag.ContinueOnError)
	entraAddr := fs.String("entra-addr", "127.0.0.1:0", "listen address of the Entra stand-in")
	graphAddr := fs.String("graph-addr", "127.0.0.1:0", "listen address of the Graph stand-in")
	tenant := fs.String("tenant", standin.DefaultTenant, "tenant id")
	clientID := fs.String("client-id", "", "client id of the app to register (optional)")
	clientSecret := fs.String("client-secret", "", "client secret of the app")
	certFile := fs.String("cert-file", "", "PEM certificate(s) the app may sign assertions with")
	perms := fs.String("permissions", standin.PermDeviceReadWriteAll, "comma-separated application permissions of the app")
	devices := fs.String("devices", "", "comma-separated Entra device ids to seed")
	devicesFile := fs.String("devices-file", "", "JSON array of devices to seed ({\"deviceId\", \"displayName\", \"operatingSystem\", \"extensionAttributes\"})")
	caOut := fs.String("ca-out", "", "write the stand-ins' CA certificate (PEM) to this file")
	verbose := fs.Bool("verbose", false, "log every request")
	resources := fs.String("resources", strings.Join(standin.GraphResources, ","), "comma-separated resource identifiers Entra issues tokens for (others: AADSTS500011)")
	graphResource := fs.String("graph-resource", standin.DefaultResource, "the resource (token audience) Graph accepts")
	users := fs.String("users", "", "comma-separated user principal names to seed (for session revocation)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var seed []standin.Device
	for _, id := range strings.Split(*devices, ",") {
		if id = strings.TrimSpace(id); id != "" {
			seed = append(seed, standin.Device{DeviceID: id, DisplayName: id, OperatingSystem: "MacMDM"})
		}
	}
	if *devicesFile != "" {
		b, err := os.ReadFile(*devicesFile)
		if err != nil {
			return err
		}
		var ds []standin.Device
		if err := json.Unmarshal(b, &ds); err != nil {
			return fmt.Errorf("%s: %w", *devicesFile, err)
		}
		for _, d := range ds {
			if d.DeviceID == "" {
				return fmt.Errorf("%s: every device needs a deviceId", *devicesFile)
			}
		}
		seed = append(seed, ds...)
	}
	var app *standin.App
	if *clientID != "" {
		spec := standin.AppSpec{ClientID: *clientID, Permissions: splitList(*perms)}
		if *certFile != "" {
			b, err := os.ReadFile(*certFile)
			if err != nil {
				return err
			}
			spec.CertificatesPEM = string(b)
		}
		a, err := spec.App()
		if err != nil {
			return err
		}
		if *clientSecret != "" {
			a.Secrets = []standin.Secret{{Value: *clientSecret}}
		}
		if len(a.Secrets) == 0 && len(a.Certificates) == 0 {
			return errors.New("--client-id needs --client-secret or --cert-file")
		}
		app = &a
	}

	p, err := standin.Start(standin.Options{Tenant: *tenant, EntraAddr: *entraAddr, GraphAddr: *graphAddr, Log: log})
	if err != nil {
		return err
	}
	defer p.Close()
	if app != nil {
		p.Entra.RegisterApp(*app)
	}
	for _, d := range seed {
		p.Graph.AddDevice(d)
	}
	p.Entra.SetResources(splitList(*resources)...)
	p.Graph.SetResource(*graphResource)
	for _, u := range splitList(*users) {
		p.Graph.AddUser(standin.DirectoryUser{UserPrincipalName: u})
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, p.CA.CertPEM(), 0o644); err != nil {
			return err
		}
	}
	info := map[string]any{
		"authority":    p.Entra.URL(),
		"graph":        p.Graph.URL(),
		"graph_root":   p.Graph.Root(),
		"tenant":       p.Entra.Tenant(),
		"client_id":    *clientID,
		"ca_file":      *caOut,
		"devices_view": p.Graph.Root() + "/_standin/devices",
		"devices":      len(seed),
	}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
