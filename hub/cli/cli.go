package cli

// This file holds what every admin command shares: the client flags, the
// TLS dial with a bearer token, and the output helpers.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/ca"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// clientFlags reach the admin API over the hub's TLS gRPC port.
type clientFlags struct {
	addr, caFile, token string
	json                bool
	timeout             time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "localhost:8443", "hub gRPC address")
	fs.StringVar(&c.caFile, "ca", "", "hub CA certificate (default: ca.pem in $POSTURE_DATA_DIR or "+defaultDataDir()+")")
	fs.StringVar(&c.token, "token", "", "API token (better: POSTURE_TOKEN, which keeps it out of ps)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for the call")
}

// clientFlagNames lets `policies apply` pass our flags through its own parser.
var clientFlagNames = map[string]bool{"addr": true, "ca": true, "token": true, "json": true, "timeout": true}

func (c *clientFlags) dial(ctx context.Context) (posturev1.AdminServiceClient, func(), error) {
	if c.token == "" {
		return nil, nil, errors.New("no API token: set POSTURE_TOKEN or --token (create the first with `posture-hub token create`)")
	}
	caFile := c.caFile
	if caFile == "" {
		dir := os.Getenv("POSTURE_DATA_DIR")
		if dir == "" {
			dir = defaultDataDir()
		}
		caFile = filepath.Join(dir, ca.CertFile)
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("hub CA: %w (set --ca or POSTURE_CA)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, nil, fmt.Errorf("hub CA %s: no PEM certificate", caFile)
	}
	conn, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(c.token)))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	return posturev1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}

// bearer sends the token on every call; TLS is required for it.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// apiCommand parses client flags plus extra ones and runs f with a client.
func apiCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	extra func(fs *flag.FlagSet), nargs int, f func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != nargs {
		fmt.Fprintf(stderr, "%s: want %d argument(s), got %d\n", name, nargs, fs.NArg())
		return 2
	}
	client, closeFn, err := cf.dial(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "posture-hub:", err)
		return 1
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	if err := f(ctx, client, &cf, fs.Args()); err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "posture-hub: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintln(stderr, "posture-hub:", err)
		}
		return 1
	}
	return 0
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format("2006-01-02 15:04:05")
}

func firstErr(err error, f func() error) error {
	if err != nil {
		return err
	}
	return f()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// interspersed moves flags in front of the positional arguments, so
// `teams set NAME --stale-after 2h` parses like `teams set --stale-after 2h
// NAME` (the flag package stops at the first positional). It needs the
// command's flags to know which ones take a value; the probe flag set it
// returns is parsed (errors ignored: apiCommand reports them).
func interspersed(args []string, extra func(fs *flag.FlagSet)) ([]string, *flag.FlagSet) {
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	var cf clientFlags
	cf.register(probe)
	if extra != nil {
		extra(probe)
	}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := probe.Lookup(name)
		if hasValue || f == nil || isBoolFlag(f) {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	out := append(append(flags, "--"), pos...)
	_ = probe.Parse(out)
	return out, probe
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// given reports which flags were set (on the command line or from POSTURE_ variables).
func given(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// withUsage puts a synopsis above the flag list of -h and of flag errors.
func withUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: posture-hub %s\n\nflags (also after the arguments):\n", synopsis)
		fs.PrintDefaults()
	}
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine keeps free text from breaking a table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
