package cli

import (
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"rotor.sh/rotor/api"
)

// Per-workspace queue quotas (issue #12; docs/dispatch.md "Quotas").
const (
	flagQuotaPayloadBytes = "quota-payload-bytes"
	flagQuotaJobs         = "quota-jobs"
	flagQuotaStoredBytes  = "quota-stored-bytes"
)

func quotaFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewIntFlag(&cli.IntFlag{Name: flagQuotaPayloadBytes, EnvVars: []string{envName(flagQuotaPayloadBytes)}, Value: api.DefaultMaxPayloadBytes, Usage: "largest job payload in bytes (413 over it; 0: no limit but the 1 MiB body limit)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: flagQuotaJobs, EnvVars: []string{envName(flagQuotaJobs)}, Value: api.DefaultMaxOpenJobs, Usage: "most queued (not yet delivered) jobs per workspace (429 over it; 0: no limit)"}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: flagQuotaStoredBytes, EnvVars: []string{envName(flagQuotaStoredBytes)}, Value: api.DefaultMaxOpenBytes, Usage: "most payload bytes of queued jobs per workspace (429 over it; 0: no limit)"}),
	}
}

// loadQuotas reads the quota settings; 0 means no limit.
func loadQuotas(c *cli.Context) (api.Quotas, error) {
	q := api.Quotas{MaxPayloadBytes: c.Int(flagQuotaPayloadBytes), MaxOpenJobs: c.Int(flagQuotaJobs), MaxOpenBytes: c.Int64(flagQuotaStoredBytes)}
	switch {
	case q.MaxPayloadBytes < 0:
		return q, settingErr(flagQuotaPayloadBytes, "must not be negative (0 is no limit)")
	case q.MaxOpenJobs < 0:
		return q, settingErr(flagQuotaJobs, "must not be negative (0 is no limit)")
	case q.MaxOpenBytes < 0:
		return q, settingErr(flagQuotaStoredBytes, "must not be negative (0 is no limit)")
	}
	// api.Quotas: zero is the default, negative no limit.
	if q.MaxPayloadBytes == 0 {
		q.MaxPayloadBytes = -1
	}
	if q.MaxOpenJobs == 0 {
		q.MaxOpenJobs = -1
	}
	if q.MaxOpenBytes == 0 {
		q.MaxOpenBytes = -1
	}
	return q, nil
}
