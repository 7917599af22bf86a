package intune

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Members are the transitive members of a group that scoping looks at.
type Members struct {
	DeviceIDs []string // Entra deviceId (lower case), not the object id
	UPNs      []string // lower case
}

// maxMemberPages bounds one group's read (999 per page).
const maxMemberPages = 200

// GroupMembers reads a group's transitive device and user members
// (GET /groups/{id}/transitiveMembers/microsoft.graph.device|user, paged).
// It needs GroupMember.Read.All (and Device.Read.All for deviceId).
func (c *Client) GroupMembers(ctx context.Context, groupID string) (Members, error) {
	if !isGUID(groupID) {
		return Members{}, fmt.Errorf("group %q: want an object id", groupID)
	}
	var m Members
	for _, kind := range []struct{ cast, sel string }{{"microsoft.graph.device", "deviceId"}, {"microsoft.graph.user", "userPrincipalName"}} {
		next := fmt.Sprintf("%s/groups/%s/transitiveMembers/%s?$select=id,%s&$top=999", c.ep.graph, url.PathEscape(groupID), kind.cast, kind.sel)
		for page := 0; next != ""; page++ {
			if page == maxMemberPages {
				return m, fmt.Errorf("group %s: more than %d pages of members", groupID, maxMemberPages)
			}
			if !strings.HasPrefix(next, c.ep.graph) {
				return m, fmt.Errorf("group %s: next page link leaves Graph: %s", groupID, next)
			}
			r, err := c.do(ctx, c.graphResource(), http.MethodGet, next, nil)
			if err != nil {
				return m, fmt.Errorf("group %s members: %w", groupID, err)
			}
			var pg struct {
				Value []struct {
					DeviceID string `json:"deviceId"`
					UPN      string `json:"userPrincipalName"`
				} `json:"value"`
				Next string `json:"@odata.nextLink"`
			}
			if err := json.Unmarshal(r.body, &pg); err != nil {
				return m, fmt.Errorf("group %s members: %w", groupID, err)
			}
			for _, v := range pg.Value {
				if v.DeviceID != "" {
					m.DeviceIDs = append(m.DeviceIDs, strings.ToLower(v.DeviceID))
				}
				if v.UPN != "" {
					m.UPNs = append(m.UPNs, strings.ToLower(v.UPN))
				}
			}
			next = pg.Next
		}
	}
	return m, nil
}
