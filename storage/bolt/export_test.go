package bolt

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"slices"

	"go.etcd.io/bbolt"

	"rotor.sh/rotor/internal/jsonx"
	"rotor.sh/rotor/storage"
)

// RewriteAudit replaces a workspace's audit rows with the rows fn returns,
// written as they are (chain values untouched) in format: "json" (the
// format of before issue 15) or "v1", one segment per row, or "v2", up to
// 64 rows a segment; and the chain head with the head it returns when not
// nil: a test's attacker with write access to the file, or a database
// written by an older Rotor. The store must be closed.
func RewriteAudit(path, ws, format string, fn func([]storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead)) error {
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
		if format == "v2" {
			// In id order, as bbolt keeps the one-row segments of the
			// other formats (a row given another id moves with it).
			slices.SortStableFunc(rows, func(a, b storage.AuditEvent) int { return cmp.Compare(a.ID, b.ID) })
			for chunk := range slices.Chunk(rows, auditSegmentEvents) {
				if err := b.Put(be64(uint64(chunk[0].ID)), encodeSegmentV2(chunk)); err != nil {
					return err
				}
			}
		}
		for _, ev := range rows {
			var seg []byte
			switch format {
			case "v2":
				continue
			case "json":
				scratch = encodeAudit(scratch, &ev)
			default:
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
