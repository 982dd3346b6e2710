//! What the coordinator's and the agent's metrics share: label sets, and the duration
//! histograms' buckets (so their figures line up in one dashboard).

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// A metric's labels: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;
/// Duration histograms by label set.
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds, from 1 ms to 1 h: dispatch figures sit at the low end, tofu phases at the high.
pub const BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// A duration histogram in seconds, with [`BUCKETS`].
pub fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A family of duration histograms, one per label set.
pub fn histograms() -> Histograms {
    Family::new_with_constructor(histogram)
}
