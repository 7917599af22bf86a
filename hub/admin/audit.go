package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/clientip"
	"github.com/posture-dev/posture/hub/store"
)

// Recorder appends to the audit log; store.Store is one. Code outside the
// admin API (e.g. host re-enrollment in agentapi) records its own events
// through it with Actor store.AuditActorHub.
type Recorder interface {
	RecordAuditEvent(ctx context.Context, e store.AuditEvent) error
}

// Auditor is the interceptor that writes every mutating AdminService call
// (anything not List…/Get…) to the audit log, whatever its outcome, so no
// handler can forget to. It must run before the Authenticator in the chain:
// a call refused for its role is recorded too. Calls without a valid token
// are not (anyone could fill the log with them); they are only logged.
type Auditor struct {
	Log    Recorder
	Logger *slog.Logger
	Now    func() time.Time
	// Proxies decides the source address (nil: the peer's, or the
	// gateway's for REST calls).
	Proxies *clientip.Resolver
}

// auditInfo is what the authenticator and the handler add to a call's event.
type auditInfo struct {
	mu            sync.Mutex
	token         *store.APIToken
	target        string
	before, after string
	changeSet     bool
}

type auditKey struct{}

func infoFrom(ctx context.Context) *auditInfo {
	ai, _ := ctx.Value(auditKey{}).(*auditInfo)
	return ai
}

// noteCaller records the authenticated token (even when its role is then
// refused).
func noteCaller(ctx context.Context, t store.APIToken) {
	if ai := infoFrom(ctx); ai != nil {
		ai.mu.Lock()
		ai.token = &t
		ai.mu.Unlock()
	}
}

// auditTarget names what the call acts on (else it is taken from the
// request's id or name).
func auditTarget(ctx context.Context, target string) {
	if ai := infoFrom(ctx); ai != nil {
		ai.mu.Lock()
		ai.target = target
		ai.mu.Unlock()
	}
}

// auditChange records settings before and after a change (either may be nil).
// Secrets are redacted.
func auditChange(ctx context.Context, before, after proto.Message) {
	if ai := infoFrom(ctx); ai != nil {
		ai.mu.Lock()
		ai.before, ai.after, ai.changeSet = redactedJSON(before), redactedJSON(after), true
		ai.mu.Unlock()
	}
}

// Mutating reports whether an AdminService method changes anything (and so
// is audited).
func Mutating(method string) bool {
	return !strings.HasPrefix(method, "List") && !strings.HasPrefix(method, "Get")
}

// Unary is the unary server interceptor.
func (a *Auditor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method, ok := strings.CutPrefix(info.FullMethod, servicePrefix)
	if !ok || !Mutating(method) {
		return handler(ctx, req)
	}
	ai := &auditInfo{}
	resp, err := handler(context.WithValue(ctx, auditKey{}, ai), req)
	a.record(ctx, method, req, ai, err)
	return resp, err
}

func (a *Auditor) record(ctx context.Context, method string, req any, ai *auditInfo, callErr error) {
	ai.mu.Lock()
	defer ai.mu.Unlock()
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	src := a.Proxies.FromContext(ctx)
	if ai.token == nil {
		log.Warn("admin call without a valid token", "method", method, "source", src, "err", callErr)
		return
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	e := store.AuditEvent{
		At: now(), Actor: ai.token.Name, ActorRole: ai.token.Role, Action: method, Target: ai.target,
		Source: src, Result: store.AuditOK, Before: ai.before, After: ai.after,
	}
	if callErr != nil {
		st := status.Convert(callErr)
		e.Result, e.Error = st.Code().String(), st.Message()
	}
	if m, ok := req.(proto.Message); ok {
		if e.Target == "" {
			e.Target = targetOf(m)
		}
		if !ai.changeSet {
			// No settings to compare: what was asked is the record.
			e.After = redactedJSON(m)
		}
	}
	// The caller may be gone; the record must still be written.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.Log.RecordAuditEvent(wctx, e); err != nil {
		log.Error("audit log write failed", "action", method, "actor", e.Actor, "result", e.Result, "err", err)
	}
}

// targetOf finds what a request names: its id, host id, name, or the id or
// name of the object it carries.
func targetOf(m proto.Message) string {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for _, name := range []protoreflect.Name{"id", "host_id", "name"} {
		if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.StringKind && r.Get(f).String() != "" {
			return r.Get(f).String()
		}
	}
	for _, name := range []protoreflect.Name{"team", "integration"} {
		if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.MessageKind && r.Has(f) {
			if t := targetOf(r.Get(f).Message().Interface()); t != "" {
				return string(name) + "/" + t
			}
		}
	}
	return ""
}

// secretFields never reach the audit log, whatever message carries them.
var secretFields = map[protoreflect.Name]bool{
	"client_secret": true, "certificate": true, "certificate_password": true, "extra_ca_pem": true,
	"secret": true, "token": true, "enroll_secret_plain": true, "csr": true,
}

// maxAuditJSON caps one before/after value (a policy apply can be megabytes).
const maxAuditJSON = 16 << 10

const redacted = "[redacted]"

// redactedJSON is m as JSON with secret fields replaced by "[redacted]".
func redactedJSON(m proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return ""
	}
	c := proto.Clone(m)
	redact(c.ProtoReflect())
	b, err := protojson.Marshal(c)
	if err != nil {
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	if len(b) > maxAuditJSON {
		return fmt.Sprintf(`{"truncated":true,"bytes":%d}`, len(b))
	}
	return string(b)
}

func redact(r protoreflect.Message) {
	r.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretFields[f.Name()] && !f.IsList() && !f.IsMap():
			switch f.Kind() {
			case protoreflect.StringKind:
				r.Set(f, protoreflect.ValueOfString(redacted))
			case protoreflect.BytesKind:
				r.Set(f, protoreflect.ValueOfBytes([]byte(redacted)))
			default:
				r.Clear(f)
			}
		case f.Kind() == protoreflect.MessageKind && f.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				redact(l.Get(i).Message())
			}
		case f.Kind() == protoreflect.MessageKind && !f.IsMap():
			redact(v.Message())
		}
		return true
	})
}

// maxAuditList caps ListAuditEvents.
const maxAuditList = 1000

func (s *Server) ListAuditEvents(ctx context.Context, req *posturev1.ListAuditEventsRequest) (*posturev1.ListAuditEventsResponse, error) {
	limit := int(req.GetLimit())
	if limit < 0 || limit > maxAuditList {
		return nil, status.Errorf(codes.InvalidArgument, "limit must be between 0 and %d", maxAuditList)
	}
	f := store.AuditFilter{Actor: req.GetActor(), Action: req.GetAction(), Limit: limit}
	if req.GetSince() != nil {
		f.Since = req.GetSince().AsTime()
	}
	es, err := s.cfg.Store.ListAuditEvents(ctx, f)
	if err != nil {
		return nil, storeErr("audit events", err)
	}
	resp := &posturev1.ListAuditEventsResponse{}
	for _, e := range es {
		resp.Events = append(resp.Events, &posturev1.AuditEvent{
			Id: e.ID, At: timestamppb.New(e.At), Actor: e.Actor, ActorRole: e.ActorRole, Action: e.Action,
			Target: e.Target, Source: e.Source, Result: e.Result, Error: e.Error, Before: e.Before, After: e.After,
		})
	}
	return resp, nil
}
