// Package compliance turns what the hub knows about a host into a verdict:
// COMPLIANT, NONCOMPLIANT, GRACE or UNKNOWN. Everything here is a pure
// function of its Input (including the clock), so the same input always
// yields the same verdict on every replica.
//
// # Precedence
//
// The first rule that matches decides the state:
//
//  1. Revoked host → NONCOMPLIANT (cause "revoked"). An admin revoked the
//     device; no team setting may make it compliant again.
//  2. The host's Entra device is in conflict (another live host reports
//     it and no admin picked one) → NONCOMPLIANT ("device_conflict"), or a
//     revoked host named it → NONCOMPLIANT ("device_revoked"); see
//     ResolveDevice. Fail closed whatever the team's settings: a claim
//     cannot be trusted to release a device.
//  3. Conditional access off for the team → COMPLIANT ("ca_disabled").
//  4. Stale host → UNKNOWN ("stale"): the host has been silent for the
//     team's stale-after (default 24h) or longer. Last seen falls back to the
//     enrollment time; a host with neither is never stale.
//  5. Unhealthy host → UNKNOWN ("unhealthy"): the agent's last AgentHealth
//     says osqueryd does not answer or results cannot be written to its
//     spool, so its earlier results are no evidence of the present.
//  6. Silent host → UNKNOWN ("silent"): a host with at least one applicable
//     conditional-access policy sent no result batch for the team's
//     missed_reports (default 3) times the policy interval the hub last sent
//     it, counted from its last batch (or its enrollment before any). This
//     holds whether or not its stream is connected: a connected agent whose
//     scheduler is stuck is as silent as a powered-off one. A host the hub
//     never sent an interval is left to rule 4.
//  7. A blocking failure → NONCOMPLIANT ("failing").
//  8. A conditional-access policy without a current result → UNKNOWN
//     ("no_results"). A result of an old policy revision is no result.
//  9. A failure in its grace period → GRACE ("grace").
//  10. Otherwise → COMPLIANT ("passing"), possibly with exempt or allowed
//     failures listed in the reasons.
//
// Only applicable policies (Policy.AppliesTo the host's platform and team)
// with the conditional_access flag take part. A policy fails on a FAIL
// result, and on an ERROR result only when the team counts errors as
// failures. A failure blocks unless one of these holds, checked in order:
//
//   - its severity is at or below the team's maximum allowed severity
//     (low < medium < high < critical; "" allows nothing; an unknown policy
//     severity ranks as critical and an unknown team maximum allows nothing,
//     so bad data fails closed);
//   - an exemption for the policy (or for all policies) has not expired;
//   - its grace period has not passed: deadline = StatusSince of the failing
//     result (the first failure) + the policy's grace period.
//
// The grace clock is the result's StatusSince, which the store resets on
// every status change: a policy that passes once and fails again starts a
// new grace period, and so does ERROR → FAIL when errors count as failures.
//
// Boundaries are half-open: at exactly a grace deadline, an exemption
// expiry or last-seen+stale-after, the later state already holds. That is
// what lets a scheduler wake at NextTransition and see the new verdict.
//
// Why a failure beats missing results (7 before 8): a host known to fail a
// blocking policy is non-compliant whatever its other results say. Why
// missing results give UNKNOWN rather than a verdict on the rest: a new
// policy or a revision bump must not flip Entra to compliant for a host
// that has not run it yet; see Desired.
//
// # What Entra should hold
//
// Desired maps a verdict to the value a sink writes: COMPLIANT and GRACE →
// "compliant", NONCOMPLIANT → "noncompliant". UNKNOWN depends on its cause:
// a stale, unhealthy or silent host fails closed ("noncompliant"), while a host that merely has
// no results yet yields "" — no write, the sink keeps whatever it holds (a
// newly enrolled device is not blocked before its first report, and a
// non-compliant device is not released by a policy revision bump).
package compliance
