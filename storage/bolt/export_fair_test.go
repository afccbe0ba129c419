package bolt

import (
	"go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

// DowngradeJobIndexes rewrites a closed file's job indexes as a rotor from
// before the per-queue ready index wrote them: open jobs in the single
// jobs_due index, no ready, leased or usage buckets, no migration marker.
func DowngradeJobIndexes(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: DefaultOpenTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketReady, bucketLeased, bucketUsage} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Delete(keyReadyIndex); err != nil {
			return err
		}
		due := tx.Bucket(bucketDue)
		return tx.Bucket(bucketJobs).ForEach(func(k, _ []byte) error {
			j, _, err := getJob(tx, string(k))
			if err != nil {
				return err
			}
			switch j.Status {
			case storage.JobQueued:
				return due.Put(dueKey(j.RunAt, j.ID), nil)
			case storage.JobLeased:
				return due.Put(dueKey(j.LeaseUntil, j.ID), nil)
			}
			return nil
		})
	})
}
