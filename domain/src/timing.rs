//! Step timings reported in `Server-Timing` (docs/PROTOCOL.md §2).

/// Up to eight named durations, in execution order. No allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    entries: [(&'static str, u64); 8],
    len: usize,
}

impl Timings {
    /// Records `name` as lasting from `start_ns` to `end_ns` (monotonic readings).
    pub fn record(&mut self, name: &'static str, start_ns: u64, end_ns: u64) {
        if self.len < self.entries.len() {
            self.entries[self.len] = (name, end_ns.saturating_sub(start_ns));
            self.len += 1;
        }
    }

    /// The recorded steps: (name, nanoseconds).
    pub fn entries(&self) -> &[(&'static str, u64)] {
        &self.entries[..self.len]
    }
}
