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
// this package runs when the table is missing.
func TestBarrierTableIsLibsagas(t *testing.T) {
	path := filepath.Join("..", "..", "migrations", "participant", "barrier.sql")
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
	if got, want := norm(BarrierTableSQL), norm(strings.Join(sql, "\n")); got != want {
		t.Fatalf("the barrier table differs from %s:\n got %s\nwant %s", path, got, want)
	}
}
