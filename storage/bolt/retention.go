package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

var _ storage.Retainer = (*Store)(nil)

// pruneScanFactor bounds the jobs one PruneJobs call looks at (live jobs
// older than Before are skipped, not deleted): the transaction stays short.
const pruneScanFactor = 8

// PruneJobs deletes finished jobs older than args.Before, oldest id first.
// Freed pages go to bbolt's freelist and are reused by later writes, so a
// file under steady load with retention stops growing.
func (s *Store) PruneJobs(ctx context.Context, args storage.PruneJobsArgs) (int, error) {
	if args.Limit <= 0 {
		return 0, nil
	}
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		var victims []storage.Job
		c := tx.Bucket(bucketJobs).Cursor()
		scanned := 0
		for k, v := c.First(); k != nil && len(victims) < args.Limit && scanned < args.Limit*pruneScanFactor; k, v = c.Next() {
			scanned++
			var j storage.Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("bolt: decode job %s: %w", k, err)
			}
			if j.CreatedAt.After(args.Before) {
				break // time-ordered ids: everything after is newer
			}
			if storage.JobFinished(j.Status) && j.UpdatedAt.Before(args.Before) {
				victims = append(victims, j)
			}
		}
		for _, j := range victims {
			if err := tx.Bucket(bucketJobs).Delete([]byte(j.ID)); err != nil {
				return err
			}
			if idx := nestedRO(tx, bucketJobIndex, j.WorkspaceID, j.Queue); idx != nil {
				if err := idx.Delete([]byte(j.ID)); err != nil {
					return err
				}
			}
			if j.IdempotencyKey != "" {
				if ib := nestedRO(tx, bucketIdem, j.WorkspaceID); ib != nil {
					ik := []byte(j.Queue + "\x00" + j.IdempotencyKey)
					if string(ib.Get(ik)) == j.ID {
						if err := ib.Delete(ik); err != nil {
							return err
						}
					}
				}
			}
			if err := countJob(tx, j.Status, ""); err != nil {
				return err
			}
		}
		n = len(victims)
		return nil
	})
	return n, err
}

var bucketAuditRetention = []byte("audit_retention")

// PruneAudit deletes the workspace's rows up to the marker and stores it.
func (s *Store) PruneAudit(ctx context.Context, args storage.PruneAuditArgs) (int, error) {
	m := args.Marker
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketAuditRetention)
		if err != nil {
			return err
		}
		var cur storage.AuditRetention
		if ok, err := get(mb, []byte(m.WorkspaceID), &cur); err != nil || ok && cur.ThroughID >= m.ThroughID {
			return err
		}
		if rows := tx.Bucket(bucketAudit).Bucket([]byte(m.WorkspaceID)); rows != nil {
			// Rows live in segments keyed by their first id (appendAudit):
			// whole segments up to the marker go; the one holding it keeps
			// its later rows, byte for byte, under its new first id.
			c := rows.Cursor()
			for k, v := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= m.ThroughID; k, v = c.First() {
				evs, err := decodeSegment(v)
				if err != nil {
					return err
				}
				off, drop := 0, 0
				for _, ev := range evs {
					if ev.ID > m.ThroughID {
						break
					}
					l, w := binary.Uvarint(v[off:])
					off += w + int(l)
					drop++
				}
				rest := append([]byte(nil), v[off:]...)
				if err := c.Delete(); err != nil {
					return err
				}
				n += drop
				if drop < len(evs) {
					if err := rows.Put(be64(uint64(evs[drop].ID)), rest); err != nil {
						return err
					}
					break
				}
			}
		}
		return put(mb, []byte(m.WorkspaceID), m)
	})
	return n, err
}

func (s *Store) GetAuditRetention(ctx context.Context, workspaceID string) (storage.AuditRetention, error) {
	var m storage.AuditRetention
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok := false
		var err error
		if b := tx.Bucket(bucketAuditRetention); b != nil {
			ok, err = get(b, []byte(workspaceID), &m)
		}
		if err == nil && !ok {
			err = fmt.Errorf("audit retention: %w", storage.ErrNotFound)
		}
		return err
	})
	return m, err
}
