package bolt

import (
	"encoding/binary"

	"go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

// RewriteAudit replaces a workspace's audit rows with the rows fn returns,
// written as they are (chain values untouched), and the chain head with the
// head it returns when not nil: a test's attacker with write access to the
// file. The store must be closed.
func RewriteAudit(path, ws string, fn func([]storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead)) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: DefaultOpenTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketAudit)
		var all []storage.AuditEvent
		if b := root.Bucket([]byte(ws)); b != nil {
			if err := b.ForEach(func(_, v []byte) error {
				evs, err := decodeSegment(v)
				all = append(all, evs...)
				return err
			}); err != nil {
				return err
			}
			if err := root.DeleteBucket([]byte(ws)); err != nil {
				return err
			}
		}
		b, err := root.CreateBucket([]byte(ws))
		if err != nil {
			return err
		}
		var scratch []byte
		rows, head := fn(all)
		for _, ev := range rows {
			scratch = encodeAudit(scratch, &ev)
			seg := append(binary.AppendUvarint(nil, uint64(len(scratch))), scratch...)
			if err := b.Put(be64(uint64(ev.ID)), seg); err != nil {
				return err
			}
		}
		if head != nil {
			return put(tx.Bucket(bucketAuditHeads), []byte(ws), *head)
		}
		return nil
	})
}

// DeleteAuditCheckpoint deletes a workspace's seal from a closed file: a
// test's attacker removing the seal.
func DeleteAuditCheckpoint(path, ws string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: DefaultOpenTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketAuditChecks).Delete([]byte(ws)) })
}
