package saga

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The barrier table is libsaga's, column for column: the statement the
// service's owner runs (migrations/participant/barrier.sql) is the one
// this package runs when the table is missing, and the upgrade of a table
// of an earlier release is barrier_element.sql's.
func TestBarrierTableIsLibsagas(t *testing.T) {
	sameAsScript(t, BarrierTableSQL, "barrier.sql")
	sameAsScript(t, BarrierUpgradeSQL, "barrier_element.sql")
}

func sameAsScript(t *testing.T, stmt, file string) {
	t.Helper()
	path := filepath.Join("..", "..", "migrations", "participant", file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no %s (the module outside its repository)", path)
	}
	var sql []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			sql = append(sql, line)
		}
	}
	norm := func(s string) string {
		return strings.TrimSuffix(strings.TrimSpace(regexp.MustCompile(`\s+`).ReplaceAllString(s, " ")), ";")
	}
	if got, want := norm(stmt), norm(strings.Join(sql, "\n")); got != want {
		t.Fatalf("the barrier table differs from %s:\n got %s\nwant %s", path, got, want)
	}
}
