package standin

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Authorize resolves a bearer token this stand-in issued and has not
// revoked or seen expire: the app it was issued to and its audience (the
// resource of the requested scope, e.g. https://api.manage.microsoft.com/).
// Other stand-ins (the Intune partner API) use it to be as strict about
// tokens as the service they mimic.
func (e *Entra) Authorize(token string) (clientID, audience string, ok bool) {
	app, ok := e.authorizeAny(token)
	if !ok {
		return "", "", false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", false
	}
	var claims struct {
		Aud string `json:"aud"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return "", "", false
	}
	return app.ClientID, claims.Aud, true
}
