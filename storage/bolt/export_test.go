package bolt

import (
	"encoding/base64"
	"encoding/binary"

	"go.etcd.io/bbolt"

	"rotor.sh/rotor/internal/jsonx"
	"rotor.sh/rotor/storage"
)

// RewriteAudit replaces a workspace's audit rows with the rows fn returns,
// written as they are (chain values untouched), one segment per row in the
// JSON format of before issue 15 when jsonRows, else in v1, and the chain
// head with the head it returns when not nil: a test's attacker with write
// access to the file, or a database written by an older Rotor. The store
// must be closed.
func RewriteAudit(path, ws string, jsonRows bool, fn func([]storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead)) error {
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
				evs, err := decodeSegment(v, 0)
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
			var seg []byte
			if jsonRows {
				scratch = encodeAudit(scratch, &ev)
			} else {
				seg = []byte{segMarker, segV1}
				scratch = appendRecordV1(scratch[:0], &ev)
			}
			seg = append(binary.AppendUvarint(seg, uint64(len(scratch))), scratch...)
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

// encodeAudit writes an audit row as JSON, as segments were written before
// issue 15 (the shape json.Marshal gives). Input and Output must be valid JSON, as the Store contract says.
func encodeAudit(buf []byte, ev *storage.AuditEvent) []byte {
	o := jsonx.Reuse(buf)
	o.Int("id", ev.ID).Time("occurred_at", ev.OccurredAt).Str("workspace_id", ev.WorkspaceID).Str("actor_id", ev.ActorID).
		Str("event_type", ev.EventType).Str("resource_type", ev.ResourceType).Str("resource_id", ev.ResourceID).
		Raw("input", ev.Input).Raw("output", ev.Output).Str("chain", base64.StdEncoding.EncodeToString(ev.Chain))
	if len(ev.Nonce) > 0 || len(ev.MAC) > 0 {
		o.Str("nonce", base64.StdEncoding.EncodeToString(ev.Nonce)).Str("mac", base64.StdEncoding.EncodeToString(ev.MAC))
	}
	return o.Bytes()
}
