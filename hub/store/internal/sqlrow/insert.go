package sqlrow

import (
	"strconv"
	"strings"
)

// Inserts of whole rows, bound $1…$n in column order, for the …Args
// builders. lib/pq and modernc sqlite both bind $N by position.
var (
	InsertPolicy      = insert("policies", PolicyCols)
	InsertSecret      = insert("enroll_secrets", SecretCols)
	InsertToken       = insert("api_tokens", TokenCols)
	InsertExemption   = insert("exemptions", ExemptionCols)
	InsertIntegration = insert("integrations", IntegrationCols)
	InsertVerdict     = insert("verdicts", VerdictCols)
)

func insert(table, cols string) string {
	n := strings.Count(cols, ",") + 1
	ps := make([]string, n)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(i+1)
	}
	return `INSERT INTO ` + table + ` (` + cols + `) VALUES (` + strings.Join(ps, ", ") + `)`
}
