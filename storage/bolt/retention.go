package bolt

import (
	"bytes"
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
			j, err := decodeJob(v)
			if err != nil {
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
			d, err := pruneSegments(rows, m.ThroughID)
			if err != nil {
				return err
			}
			n = d
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

// pruneSegments deletes a workspace's rows up to through. Rows live in
// segments keyed by their first id (appendAudit), ids ascending: every
// segment followed by one keyed at most through+1 goes whole, counted
// without decoding; only the last one is read, by record ids alone, and
// keeps its later rows under its new first id: byte for byte for JSON and
// v1, re-encoded for v2 (whose header holds the dropped rows' values).
// This runs on bbolt's single writer, so it decodes no JSON (issue 11's
// soak).
func pruneSegments(rows *bbolt.Bucket, through int64) (int, error) {
	var keys [][]byte
	c := rows.Cursor()
	for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= through; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	if len(keys) == 0 {
		return 0, nil
	}
	// The segment after the last one listed starts past through.
	nextKey, _ := c.Seek(keys[len(keys)-1])
	if nextKey != nil {
		nextKey, _ = c.Next()
	}
	wholeLast := nextKey != nil && int64(binary.BigEndian.Uint64(nextKey)) == through+1
	n := 0
	for i, k := range keys {
		seg := rows.Get(k)
		if i < len(keys)-1 || wholeLast {
			cnt, err := segmentRecords(seg)
			if err != nil {
				return 0, err
			}
			if err := rows.Delete(k); err != nil {
				return 0, err
			}
			n += cnt
			continue
		}
		body, format, err := segmentBody(seg)
		if err != nil {
			return 0, err
		}
		off, drop, total := 0, 0, 0
		var restFirst int64
		for rest := body; len(rest) > 0; {
			rec, next, err := nextFrame(rest)
			if err != nil {
				return 0, err
			}
			id, err := recordIDOf(rec, format)
			if err != nil {
				return 0, err
			}
			total++
			if id <= through {
				off += len(rest) - len(next)
				drop++
			} else if restFirst == 0 {
				restFirst = id
			}
			rest = next
		}
		var tail []byte
		if format == segV2 && drop > 0 && drop < total {
			// A v2 header's dictionary holds the dropped rows' values too
			// (names, hosts, request ids, actors): re-encode the kept rows
			// under a dictionary of their own, so a pruned row's values
			// leave the file. Ids, chain values, nonces and MACs are copied
			// as they are, so the chain and the row MACs still verify.
			kept, err := decodeSegmentV2(seg, through)
			if err != nil {
				return 0, err
			}
			tail = encodeSegmentV2(kept)
		} else {
			// The kept rows stay byte for byte, under the segment's header
			// (copied: seg is bbolt's memory).
			hdr := len(seg) - len(body)
			tail = make([]byte, 0, hdr+len(body)-off)
			tail = append(append(tail, seg[:hdr]...), body[off:]...)
		}
		if err := rows.Delete(k); err != nil {
			return 0, err
		}
		n += drop
		if drop < total {
			if err := rows.Put(be64(uint64(restFirst)), tail); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// segmentRecords counts a segment's records.
func segmentRecords(seg []byte) (int, error) {
	body, _, err := segmentBody(seg)
	if err != nil {
		return 0, err
	}
	n := 0
	for len(body) > 0 {
		if _, body, err = nextFrame(body); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// recordID reads a JSON record's id: the JSON format wrote it first, as
// {"id":N,...}. Anything else is decoded in full.
func recordID(rec []byte) (int64, error) {
	const prefix = `{"id":`
	if bytes.HasPrefix(rec, []byte(prefix)) {
		var id int64
		i := len(prefix)
		for ; i < len(rec) && rec[i] >= '0' && rec[i] <= '9' && i < len(prefix)+18; i++ {
			id = id*10 + int64(rec[i]-'0')
		}
		if i > len(prefix) && i < len(rec) && rec[i] == ',' {
			return id, nil
		}
	}
	var ev struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(rec, &ev); err != nil {
		return 0, fmt.Errorf("bolt: corrupt audit record: %w", err)
	}
	return ev.ID, nil
}
