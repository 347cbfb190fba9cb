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
