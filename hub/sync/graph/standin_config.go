package graph

import "github.com/posture-dev/posture/hub/sync/graph/standin"

// StandinConfig returns a custom-cloud Config aimed at running stand-ins
// (tests, benchmarks, the demo): their authority host, Graph URL, tenant
// and CA, with a client secret credential.
func StandinConfig(p *standin.Pair, clientID, clientSecret string, attribute int) Config {
	return Config{
		Cloud:         CloudCustom,
		AuthorityHost: p.Entra.URL(),
		GraphBaseURL:  p.Graph.URL(),
		ExtraCAPEM:    p.CA.CertPEM(),
		TenantID:      p.Entra.Tenant(),
		ClientID:      clientID,
		ClientSecret:  clientSecret,
		Attribute:     attribute,
	}
}
