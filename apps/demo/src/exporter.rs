//! `GET /metrics`: cloakroom's metrics in the Prometheus text format.
//!
//! The library records through the `metrics` facade and exports nothing; the demo installs
//! a Prometheus recorder for the process and renders it here. A real deployment serves
//! this on a port only its scraper reaches: the counts say how busy the service is.

use std::sync::OnceLock;

use cloakroom::telemetry::names;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Store operation times, in seconds: from an in-process map (microseconds) to a store
/// at its timeout (5 s by default).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Writers per group-commit batch.
const WRITER_BUCKETS: &[f64] = &[2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics` recorder the first
/// time it is asked for; `None` if the process had installed another recorder first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::STORE_OPERATION_DURATION.to_owned()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(names::GROUP_COMMIT_WRITERS.to_owned()),
                    WRITER_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The `Content-Type` of [`render_text`]'s answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`'s body, or why there is none (answered with 503).
pub fn render_text() -> Result<String, &'static str> {
    let prometheus = prometheus().ok_or("another metrics recorder is installed in this process")?;
    prometheus.run_upkeep();
    Ok(prometheus.render())
}
