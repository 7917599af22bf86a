package graph

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// PermRevokeSessions is the least-privileged application permission for
// POST /users/{id}/revokeSignInSessions. Grant it only when a team uses
// revoke_sessions.
const PermRevokeSessions = "User.RevokeSessions.All"

// revokeRoles are the application roles that allow revoking sessions.
var revokeRoles = []string{PermRevokeSessions, "User.ReadWrite.All", "Directory.ReadWrite.All"}

func canRevoke(roles []string) bool {
	for _, r := range revokeRoles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// revokeSessions revokes the sign-in sessions (refresh tokens, session
// cookies) of the user upn, so access tokens issued before the device
// turned non-compliant stop being renewed. The request is built by hand:
// msgraph-sdk-go's users package is large and this is its one call.
func (s *Sink) revokeSessions(ctx context.Context, upn string) outcome {
	o := outcome{DeviceID: upn}
	if upn == "" {
		o.Status, o.Code, o.Message = failed, "no_user", "the host has no user principal name: no user to revoke"
		return o
	}
	// Check the token's roles first: a missing permission is this
	// feature's problem, not the integration's (whose device writes work).
	tok, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s.scope}, EnableCAE: true})
	if err != nil {
		oc := s.outcomeFromError(upn, err, true)
		return oc
	}
	if roles, ok := tokenRoles(tok.Token); ok && !canRevoke(roles) {
		o.Status, o.Code = failed, "permission_missing"
		o.Message = fmt.Sprintf("app %s lacks the application permission %s: grant it with admin consent, or turn revoke_sessions off for the team", s.cfg.ClientID, PermRevokeSessions)
		return o
	}
	ri := abstractions.NewRequestInformation()
	ri.Method = abstractions.POST
	ri.UrlTemplate = "{+baseurl}/users/{user%2Did}/revokeSignInSessions"
	ri.PathParameters["baseurl"] = s.adapter.GetBaseUrl()
	ri.PathParameters["user%2Did"] = upn
	ri.Headers.AddAll(s.headers(ctx))
	ri.Headers.TryAdd("Accept", "application/json")
	err = s.adapter.SendNoContent(ctx, ri, abstractions.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue})
	if err == nil {
		o.Status = applied
		return o
	}
	ge, ok := fromAPIError(err)
	switch {
	case ok && ge.Status == http.StatusNotFound && (ge.Code == "Request_ResourceNotFound" || ge.Code == "ResourceNotFound"):
		o.Status, o.Code, o.HTTPStatus = failed, "user_not_found", ge.Status
		o.Message = fmt.Sprintf("no user %s in tenant %s (%s): check the host's user principal name", upn, s.cfg.TenantID, ge.Message)
	case ok && ge.Status == http.StatusForbidden:
		o.Status, o.Code, o.HTTPStatus = failed, ge.Code, ge.Status
		o.Message = fmt.Sprintf("Graph refused to revoke the sessions of %s (%s: %s): grant %s with admin consent", upn, ge.Code, ge.Message, PermRevokeSessions)
	default:
		o = s.outcomeFromError(upn, err, true)
	}
	return o
}
