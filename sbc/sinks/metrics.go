package sinks

import "github.com/prometheus/client_golang/prometheus"

var (
	deliveredDesc = prometheus.NewDesc("portcullis_sink_delivered_total",
		"Items this node delivered to each sink, by stream (records, events).", []string{"sink", "stream"}, nil)
	droppedDesc = prometheus.NewDesc("portcullis_sink_dropped_total",
		"Items lost for each sink, by stream: events over the sink's queue bound, records trimmed from the state before they were shipped.",
		[]string{"sink", "stream"}, nil)
	failuresDesc = prometheus.NewDesc("portcullis_sink_failures_total",
		"Failed delivery attempts to each sink (each is retried).", []string{"sink"}, nil)
	lagDesc = prometheus.NewDesc("portcullis_sink_lag",
		"Call records not yet delivered to each sink (from the replicated cursor: the same on every node).", []string{"sink"}, nil)
	queuedDesc = prometheus.NewDesc("portcullis_sink_queued",
		"Security events waiting in each sink's queue on this node.", []string{"sink"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Shipper) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{deliveredDesc, droppedDesc, failuresDesc, lagDesc, queuedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Shipper) Collect(ch chan<- prometheus.Metric) {
	for i, st := range s.Stats() {
		k := s.sinks[i]
		for _, str := range []Stream{Records, Events} {
			if str == Records && !k.spec.Records || str == Events && !k.spec.Events {
				continue
			}
			ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(st.Delivered[str]), st.Name, str.String())
			ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(st.Dropped[str]), st.Name, str.String())
		}
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(st.Failures), st.Name)
		if k.spec.Records {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.Lag), st.Name)
		}
		if k.spec.Events {
			ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(st.Queued), st.Name)
		}
	}
}
