package main

import (
	"fmt"
	"strings"

	osquery "github.com/osquery/osquery-go"
)

// platform is what differs between the operating systems posture.ext runs
// on. It is a pure function of GOOS so every platform's defaults can be
// tested on any machine.
type platform struct {
	// socket is osqueryd's own --extensions_socket default (OSQUERY_SOCKET
	// "osquery.em" in osquery's home-folder header): a service started
	// without --socket finds an osqueryd that runs with default flags.
	socket string
	// stateDir holds the key, certificate, spool and policy cache.
	stateDir string
	// extensionsLoad is where osqueryd reads its autoload list (docs and hints).
	extensionsLoad string
	// pipe: the socket is a Windows named pipe (\\.\pipe\name), not a file.
	pipe bool
	// modeBits: file modes (0700/0600) protect the state directory; on
	// Windows a DACL does (statedir_windows.go).
	modeBits bool
}

func platformDefaults(goos string) platform {
	switch goos {
	case "windows":
		return platform{socket: `\\.\pipe\osquery.em`, stateDir: `C:\ProgramData\posture`,
			extensionsLoad: `C:\Program Files\osquery\extensions.load`, pipe: true}
	case "darwin":
		return platform{socket: "/var/osquery/osquery.em", stateDir: "/var/db/posture",
			extensionsLoad: "/var/osquery/extensions.load", modeBits: true}
	case "freebsd":
		return platform{socket: "/var/run/osquery.em", stateDir: "/var/db/posture",
			extensionsLoad: "/var/db/osquery/extensions.load", modeBits: true}
	default: // linux and the other Unixes
		return platform{socket: "/var/osquery/osquery.em", stateDir: "/var/lib/posture",
			extensionsLoad: "/etc/osquery/extensions.load", modeBits: true}
	}
}

// pipePrefix is the local named-pipe namespace; osquery-go dials and listens
// with go-winio, which takes only such names.
const pipePrefix = `\\.\pipe\`

// unixSocketMax is the longest socket path a Unix connect accepts here
// (sun_path is 104 bytes on macOS and the BSDs, 108 on Linux, NUL included).
const unixSocketMax = 103

// checkSocket rejects a --socket value that can never work on goos, with a
// message that says why, instead of retrying it forever. tables: the
// extension serves its tables, for which osquery-go listens on
// "<socket>.<uuid>" and so refuses sockets longer than
// osquery.MaxSocketPathCharacters.
func checkSocket(goos, socket string, tables bool) error {
	if socket == "" {
		return fmt.Errorf("--socket is empty; osqueryd's default is %s", platformDefaults(goos).socket)
	}
	if platformDefaults(goos).pipe {
		// Windows reads "//./pipe/x" as "\\.\pipe\x"; case does not matter.
		name := strings.ToLower(strings.ReplaceAll(socket, "/", `\`))
		if !strings.HasPrefix(name, pipePrefix) || len(name) == len(pipePrefix) {
			return fmt.Errorf(`--socket %q: on Windows osqueryd's extension socket is a named pipe such as %s (osqueryd --extensions_socket)`, socket, platformDefaults(goos).socket)
		}
	}
	limit, why := unixSocketMax, "a Unix socket path"
	if platformDefaults(goos).pipe {
		limit = 256 // a pipe name's own limit
		why = "a pipe name"
	}
	if tables {
		limit, why = osquery.MaxSocketPathCharacters, "a socket the tables are served next to (osquery-go appends .<uuid>)"
	}
	if len(socket) > limit {
		return fmt.Errorf("--socket %q is %d bytes, longer than %d, the limit for %s; give osqueryd a shorter --extensions_socket", socket, len(socket), limit, why)
	}
	return nil
}

// socketHint says where to look when nothing answers on the socket.
func socketHint(c *config) string {
	if c.socketDefaulted {
		return "no --socket given, so this is osqueryd's default; is osqueryd running, and with another --extensions_socket? pass the same path as --socket"
	}
	return "is osqueryd running with --extensions_socket " + c.socket + "?"
}
