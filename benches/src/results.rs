//! What a run measured, as saved between the run and the report.

use serde::{Deserialize, Serialize};

use crate::scenario::{Library, Scenario, Target};

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// The machine it ran on.
    pub machine: Machine,
    /// Whether this was the quick mode.
    pub quick: bool,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
    /// In-process measurements.
    pub in_process: Vec<Throughput>,
    /// Over-HTTP measurements.
    pub http: Vec<Throughput>,
    /// Store commands or queries per request.
    pub round_trips: Vec<RoundTrips>,
    /// Memory per session in the memory stores.
    pub memory: Vec<MemoryUse>,
    /// Redis's own CPU for cloakroom's update script (absent when Redis was not run).
    #[serde(default)]
    pub redis_script: Option<ScriptCost>,
}

/// What Redis reports (`INFO commandstats`) for the `EVALSHA` calls of a run of
/// cloakroom's S3 writes: the server-side CPU of the compare-and-set script.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScriptCost {
    /// Write requests made.
    pub requests: u64,
    /// `EVALSHA` calls Redis counted.
    pub calls: u64,
    /// Redis's microseconds per call.
    pub usec_per_call: f64,
}

/// The machine a run is on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Versions of the servers and the load generator.
    pub servers: Vec<String>,
}

/// One target running one scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Throughput {
    /// Who, on what.
    pub target: Target,
    /// Which request.
    pub scenario: Scenario,
    /// Requests per second (median of the samples in process; the whole run over HTTP).
    pub per_second: f64,
    /// Median latency in microseconds (over HTTP: wrk's 50th percentile).
    pub median_us: f64,
    /// Requests answered with something other than 2xx, or not answered.
    pub failed: u64,
    /// For S5: what happened to the writes.
    pub contended: Option<Contended>,
    /// Fastest round over slowest (1.0 for a single round): how noisy the machine was.
    #[serde(default = "one")]
    pub spread: f64,
}

fn one() -> f64 {
    1.0
}

/// S5's outcome: how many acknowledged increments the counter kept.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Contended {
    /// Write requests answered 2xx.
    pub acknowledged: u64,
    /// The counter afterwards: the increments that survived.
    pub survived: u64,
}

impl Contended {
    /// Acknowledged increments the counter does not hold.
    pub fn lost(&self) -> u64 {
        self.acknowledged.saturating_sub(self.survived)
    }
}

/// What a request costs the store: commands (Redis) or statements (PostgreSQL), and
/// round trips (including connection-pool health checks).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundTrips {
    /// Who, on what.
    pub target: Target,
    /// Which request.
    pub scenario: Scenario,
    /// Commands or statements per request, averaged over the measured requests.
    pub per_request: f64,
    /// Round trips per request (concurrent requests sharing a pipelined connection share
    /// round trips, so S5's can be lower than its command count).
    pub round_trips: f64,
}

/// Bytes per session with many sessions in a memory store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Whose store.
    pub library: Library,
    /// How many sessions were stored.
    pub sessions: u64,
    /// Heap bytes still allocated per session (counted by the allocator).
    pub heap_bytes: f64,
    /// Resident-set growth per session.
    pub rss_bytes: f64,
}

/// Combines repeated measurements of the same target and scenario (rounds run in
/// alternating order, so drift in the machine's speed hits every library alike): the
/// median rate and latency, and the sums of failures and S5 writes.
pub fn combine_rounds(rows: Vec<Throughput>) -> Vec<Throughput> {
    let mut groups: Vec<Vec<Throughput>> = Vec::new();
    for row in rows {
        match groups
            .iter_mut()
            .find(|group| group[0].target == row.target && group[0].scenario == row.scenario)
        {
            Some(group) => group.push(row),
            None => groups.push(vec![row]),
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let median = |value: fn(&Throughput) -> f64| {
                let mut values: Vec<f64> = group.iter().map(value).collect();
                values.sort_by(f64::total_cmp);
                let mid = values.len() / 2;
                if values.len().is_multiple_of(2) {
                    (values[mid - 1] + values[mid]) / 2.0
                } else {
                    values[mid]
                }
            };
            let contended = group[0].contended.map(|_| Contended {
                acknowledged: group
                    .iter()
                    .filter_map(|row| row.contended)
                    .map(|c| c.acknowledged)
                    .sum(),
                survived: group
                    .iter()
                    .filter_map(|row| row.contended)
                    .map(|c| c.survived)
                    .sum(),
            });
            Throughput {
                target: group[0].target,
                scenario: group[0].scenario,
                per_second: median(|row| row.per_second),
                median_us: median(|row| row.median_us),
                failed: group.iter().map(|row| row.failed).sum(),
                contended,
                spread: {
                    let rates = group.iter().map(|row| row.per_second);
                    let fastest = rates.clone().fold(f64::MIN, f64::max);
                    let slowest = rates.fold(f64::MAX, f64::min);
                    if slowest > 0.0 {
                        fastest / slowest
                    } else {
                        1.0
                    }
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Library, StoreKind};

    fn row(per_second: f64, lost: u64) -> Throughput {
        Throughput {
            target: Target::new(Library::Floor, StoreKind::Memory),
            scenario: Scenario::Contended,
            per_second,
            median_us: 1.0,
            failed: 1,
            contended: Some(Contended {
                acknowledged: 10,
                survived: 10 - lost,
            }),
            spread: 1.0,
        }
    }

    #[test]
    fn rounds_combine_to_medians_and_sums() {
        let combined = combine_rounds(vec![row(3.0, 0), row(1.0, 2), row(2.0, 1)]);
        assert_eq!(combined.len(), 1);
        assert_eq!(combined[0].per_second, 2.0);
        assert_eq!(combined[0].spread, 3.0);
        assert_eq!(combined[0].failed, 3);
        assert_eq!(combined[0].contended.unwrap().lost(), 3);
    }
}
