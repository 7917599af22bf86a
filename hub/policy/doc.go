// Package policy loads, lints and converts a policy tree: the folder of YAML
// files (policies/, or an operator's git repository) that `posture-hub
// policies lint` checks offline and `posture-hub policies apply` sends to
// the hub's AdminService.ApplyPolicies.
//
// # Files
//
// LoadDir reads every .yml and .yaml file under a folder, recursively, in
// sorted path order (hidden files and folders are skipped). A file holds
// one or more YAML documents (separated by ---); each document is either a
// plain list or an apiVersion/kind/spec document.
//
// A plain list holds policies, except in a file named teams.yml/teams.yaml
// (a list of teams) or facts.yml/facts.yaml (a list of fact queries).
//
// # Policies
//
// posture's keys:
//
//	# policies/macos.yml
//	- id: macos-filevault            # slug: a-z 0-9 - _ ; default: slug of name
//	  name: FileVault is on
//	  query: SELECT 1 FROM disk_encryption WHERE encrypted = 1;
//	  description: …
//	  resolution: |                  # Markdown for the end user
//	    1. Open System Settings…
//	  severity: high                 # low | medium | high | critical (default medium)
//	  platform: darwin               # "darwin,linux" or a list; empty = all
//	  conditional_access: true       # failing it can block sign-in
//	  grace_period: 3d               # Go duration, optionally led by days: 3d, 1d12h, 72h
//	  team: engineering              # empty = every team
//
// Fleet's policy keys are accepted as they are, in a plain list (Fleet
// GitOps lib files) or as documents:
//
//	apiVersion: v1
//	kind: policy
//	spec:
//	  name: macOS - FileVault enabled
//	  query: SELECT 1 FROM disk_encryption WHERE encrypted = 1;
//	  critical: true
//	  platform: darwin
//
// Fleet keys that map onto posture: critical: true is severity critical
// (it may not contradict an explicit severity); conditional_access_enabled
// is conditional_access; fleet (Fleet's newer name for team) is team, and
// team "No team" is posture's default team. A numeric id in a kind: policy
// document (fleetctl get output) is Fleet's database id and is ignored; the
// id is then the slug of the name, so renaming such a policy changes its id.
//
// Fleet keys posture accepts and ignores (a warning is printed when one is
// set to a non-default value): calendar_events_enabled, software_title_id,
// script_id, run_script, install_software, patch_software,
// continuous_automations_enabled, fleet_maintained_app_slug,
// labels_include_any, labels_include_all, labels_exclude_any,
// labels_exclude_all (posture scopes by platform and team only), type
// ("dynamic" only; Fleet patch policies are rejected), and the read-only
// fields fleetctl prints (author_*, team_id, fleet_id, query_id, report_id,
// *_host_count, created_at, updated_at, host_count_updated_at). Fleet GitOps
// "- path: …" references are rejected: put the referenced file in the tree.
// Platform "chrome" is rejected: posture's extension does not run on
// ChromeOS. Other Fleet document kinds (query, label, pack, config,
// enroll_secret, user_roles, software) are skipped with a warning.
//
// # Teams
//
// In teams.yml, a list; anywhere, as kind: team documents with the same
// fields under spec:
//
//	# policies/teams.yml
//	- name: engineering
//	  settings:
//	    conditional_access: true     # off: the team's hosts always count as compliant
//	    max_allowed_severity: low    # failures above it count; "" = every failure counts
//	    errors_as_failures: false    # ERROR results count as failures
//	    stale_after: 24h             # silent longer: UNKNOWN (0 = hub default, 24h)
//	    revoke_sessions: false       # a qualifying NONCOMPLIANT transition revokes the user's sessions
//	    revoke_sessions_min_severity: high # lowest policy severity that does ("" = high)
//	    missed_reports: 3            # no result batch for this many intervals: UNKNOWN (0 = default, 3)
//
// A policy naming a team the tree does not declare gets a warning (the team
// may already exist on the hub). Fleet's kind: team documents (spec.team)
// are rejected with a pointer to this format.
//
// # Facts
//
// Fact queries tell the hub who a host is (e.g. its Entra device id); the
// first column of the first row is the value. In facts.yml, a list; or as
// kind: fact documents:
//
//	# policies/facts.yml
//	- name: entra_device_id          # a-z 0-9 _
//	  platform: darwin               # like a policy's; empty = all
//	  query: SELECT device_id FROM posture_entra;
//	  description: …
//
// A fact name may appear once per platform. apply sends the tree's facts
// with the policies (ApplyPoliciesRequest.facts, one FactQuery per
// platform); Tree.FactQueries(platform) gives what a host's PolicySet
// carries. The hub reads entra_device_id and user_principal_name
// (KnownFacts); other names get a warning.
//
// # Lint
//
// Everything is checked and every problem reported, as "file:line: message"
// (Errors): YAML syntax, unknown and duplicate keys, missing name or query,
// duplicate policy ids, teams and facts (naming the first definition),
// invalid id, severity, platform, durations and booleans, and queries that
// are not exactly one read-only SELECT or WITH … SELECT (CheckQuery, a
// SQLite-aware tokenizer: strings, quoted identifiers and comments may
// contain ';' and keywords; a trailing ';' is fine). For a query written as
// a literal block (|) the line is that of the offending token. Warnings
// (Tree.Warnings) flag what is legal but likely wrong: no resolution, no
// severity, ignored Fleet keys, undeclared teams, teams without
// conditional_access, facts the hub does not read.
//
// Validate (and ValidateApply, for hooks taking an error) applies the same
// rules to policies and teams received over the API, so the hub refuses
// what lint would.
package policy
