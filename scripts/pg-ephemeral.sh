#!/usr/bin/env bash
# pg-ephemeral.sh start|stop|url|status
#
# A throw-away PostgreSQL for tests and CI, built from the machine's
# initdb/postgres binaries: trust auth, fsync off, listening only on a unix
# socket inside its own directory (no TCP port is taken). As root it runs the
# server as the postgres user, since initdb and postgres refuse root.
#
#   export POSTURE_TEST_DATABASE_URL="$(scripts/pg-ephemeral.sh start)"
#   ...
#   scripts/pg-ephemeral.sh stop
#
# start prints the URL of the server's "postgres" database (the tests create
# one database per test from it). start and stop are idempotent.
# POSTURE_PG_DIR overrides the directory (keep it short: socket paths are
# limited to ~100 bytes).
set -euo pipefail

dir="${POSTURE_PG_DIR:-/tmp/posture-pg-$(id -u)}"
data="$dir/data"
port=5432 # only names the socket file inside $dir

log() { echo "pg-ephemeral: $*" >&2; }

bindir() {
	local d
	if d="$(pg_config --bindir 2>/dev/null)" && [[ -x "$d/initdb" && -x "$d/postgres" ]]; then
		echo "$d"
		return
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
		if [[ -x "$d/initdb" && -x "$d/postgres" ]]; then
			echo "$d"
			return
		fi
	done
	log "no initdb/postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
	exit 1
}

# as runs a command as the server's owner: the postgres user when we are root.
as() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

url() { echo "postgres://postgres@/postgres?host=$dir&port=$port&sslmode=disable"; }

running() { [[ -f "$data/PG_VERSION" ]] && as "$(bindir)/pg_ctl" -D "$data" status >/dev/null 2>&1; }

start() {
	local bin
	bin="$(bindir)"
	if running; then
		url
		return
	fi
	mkdir -p "$dir"
	chmod 700 "$dir"
	if [[ "$(id -u)" == 0 ]]; then
		chown postgres:postgres "$dir"
	fi
	if [[ ! -f "$data/PG_VERSION" ]]; then
		as "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 || {
			cat "$dir/initdb.log" >&2
			exit 1
		}
	fi
	as "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start \
		-o "-k $dir -p $port -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		>/dev/null || {
		cat "$dir/postgres.log" >&2
		exit 1
	}
	log "started in $dir"
	url
}

stop() {
	if running; then
		as "$(bindir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null
		log "stopped"
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url) url ;;
status)
	if running; then
		url
	else
		log "not running"
		exit 1
	fi
	;;
*)
	echo "usage: $0 start|stop|url|status" >&2
	exit 2
	;;
esac
