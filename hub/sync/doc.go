// Package sync delivers verdict changes to identity providers, whatever the
// sink (Graph device attributes, Intune partner, webhook).
//
// The flow: the verdict engine writes a Change into the outbox in the same
// transaction as the verdict change, one row per integration the host's
// team uses, when compliance.Desired of the new verdict is not "" and
// differs from that of the previous verdict (COMPLIANT → GRACE needs no
// row). Hosts without an Entra device id get no row (they are listed as
// unmapped). Workers on every hub replica
// drain the outbox (Outbox.Claim leases whole devices, so replicas never
// work on one device at once), coalesce each device's pending rows (the
// latest desired state wins; a state equal to the last one the sink
// acknowledged is dropped, so unchanged verdicts cost 0 writes), batch per
// integration (up to 20, Graph's $batch limit), respect each tenant's write
// quota and Retry-After, retry with exponential backoff and jitter, and
// dead-letter with the sink's error code. A Reconciler periodically reads
// back what the sink holds and enqueues low-priority repairs for drift.
//
// Delivery is at-least-once at the sink level and exactly-once per
// transition in practice: a device's rows are only sent while the worker
// holds the device's lease, the worker refuses to start a send that could
// outlive the lease, and settling happens in one call. A crash between a
// sink's success and Settle can repeat one write of the same value, which
// sinks make idempotent (PATCH of an attribute to a fixed value).
package sync
