// Package postgres is Rotor's PostgreSQL storage backend, for many nodes on
// one database. Schema migrations are embedded and applied on Open under an
// advisory lock. The audit table is audit_event, with the columns the
// product guide queries. Like every backend it stores ciphertext, wrapped
// keys and metadata only.
package postgres
