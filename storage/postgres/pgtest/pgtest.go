// Package pgtest gives tests a fresh PostgreSQL schema of their own. Tests
// that need PostgreSQL fail when it is unreachable under CI=true, and are
// skipped elsewhere.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is this machine kind's PostgreSQL (trust auth, database test).
const DefaultDSN = "postgres://127.0.0.1:5432/test?sslmode=disable"

// BaseDSN is ROTOR_TEST_POSTGRES_DSN, or DefaultDSN.
func BaseDSN() string {
	if v := os.Getenv("ROTOR_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return DefaultDSN
}

// Schema creates a schema for one test, dropped at cleanup, and returns a
// DSN that uses it and its name.
func Schema(t testing.TB) (dsn, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, BaseDSN())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("no PostgreSQL at %s: %v", BaseDSN(), err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = "rotor_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), BaseDSN()); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	return BaseDSN() + "&search_path=" + schema, schema
}
