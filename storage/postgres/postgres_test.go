package postgres_test

import (
	"context"
	"testing"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/storage/postgres/pgtest"
	"rotor.sh/rotor/storage/storagetest"
)

func freshSchema(t *testing.T) string {
	dsn, _ := pgtest.Schema(t)
	return dsn
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
