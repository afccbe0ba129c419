package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/storage/storagetest"
)

// DefaultTestDSN is the machine's PostgreSQL (trust auth, database test).
const DefaultTestDSN = "postgres://127.0.0.1:5432/test?sslmode=disable"

func testDSN() string {
	if v := os.Getenv("ROTOR_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return DefaultTestDSN
}

// freshSchema makes a schema of its own for one test and returns a DSN
// that uses it; the schema is dropped afterwards. Without PostgreSQL the
// test fails under CI=true and is skipped elsewhere.
func freshSchema(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("no PostgreSQL at %s: %v", testDSN(), err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "rotor_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testDSN())
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	return testDSN() + "&search_path=" + schema
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := postgres.Open(context.Background(), freshSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigrateTwice(t *testing.T) {
	dsn := freshSchema(t)
	for range 2 {
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

func TestChangesAcrossNodes(t *testing.T) {
	dsn := freshSchema(t)
	a, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storagetest.RunChanges(t, a, b)
}
