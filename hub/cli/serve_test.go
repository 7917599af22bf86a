package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// A bad --trusted-proxies (flag or environment) stops serve before it
// starts, with an error naming the entry.
func TestServeRejectsBadTrustedProxies(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{name: "flag", args: []string{"--trusted-proxies", "10.0.0.0/8,10.0.0.0/33"}, want: `"10.0.0.0/33"`},
		{name: "hostname", args: []string{"--trusted-proxies", "lb.example.com"}, want: `"lb.example.com"`},
		{name: "env", env: "10.0.0.1,nope", want: "POSTURE_TRUSTED_PROXIES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("POSTURE_TRUSTED_PROXIES", tc.env)
			}
			var out, errb bytes.Buffer
			args := append([]string{"serve", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)
			code := Run(context.Background(), args, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) || !strings.Contains(errb.String(), "trusted proxy") {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", code, errb.String(), tc.want)
			}
		})
	}
}
