package bolt

import (
	"context"
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
