// placeholder until the generator lands (being written in parallel)
use chrono::{DateTime, Utc};
pub struct SynthParams;
pub struct SynthSummary {
    pub accounts: usize,
    pub opportunities: usize,
    pub registrations: usize,
    pub reps: usize,
    pub partners: usize,
    pub users: usize,
    pub bytes: u64,
}
impl SynthParams {
    pub fn scaled(_s: u64, _o: usize, _n: DateTime<Utc>) -> Self {
        SynthParams
    }
}
pub fn write_program(_d: &std::path::Path, _p: &SynthParams) -> anyhow::Result<SynthSummary> {
    anyhow::bail!("not yet")
}
