package sftp_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)
	reg := prometheus.NewPedanticRegistry()
	m := sftp.NewMetrics(reg)

	// Both outcomes exist before any upload, so alerts on errors work from
	// the first one.
	require.Equal(t, 2, testutil.CollectAndCount(reg, "passerelle_sftp_uploads_total"))

	u, err := sftp.NewUploader(tg.cfg, m)
	require.NoError(t, err)
	data := billingCSV(10)
	_, err = u.Upload(context.Background(), "ok.csv", data)
	require.NoError(t, err)
	_, err = u.Upload(context.Background(), "../bad.csv", data)
	require.Error(t, err)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range metric.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case metric.Counter != nil:
				got[key] = metric.GetCounter().GetValue()
			case metric.Histogram != nil:
				got[key+"_count"] = float64(metric.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"passerelle_sftp_upload_bytes_total":            float64(len(data)),
		"passerelle_sftp_uploads_total{outcome=ok}":     1,
		"passerelle_sftp_uploads_total{outcome=error}":  1,
		"passerelle_sftp_upload_duration_seconds_count": 2,
	}
	require.Equal(t, want, got)
}

func TestNilMetrics(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)
	u, err := sftp.NewUploader(tg.cfg, nil)
	require.NoError(t, err)
	_, err = u.Upload(context.Background(), "ok.csv", []byte("x"))
	require.NoError(t, err)
}
