//! Records for the standalone fakes (the examples the benchmarks run), read
//! from JSON Lines files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

/// Records handed to `insert` at a time.
const BATCH: usize = 4096;

/// Reads `path`, one JSON object a line, and hands the objects to `insert` in
/// batches. Blank lines are skipped; a line that is not a JSON object is
/// counted and skipped. Says on stderr what was loaded:
/// `{who}: loaded N {what} from PATH in T` and the lines skipped, if any.
pub fn jsonl(
    who: &str,
    what: &str,
    path: &Path,
    mut insert: impl FnMut(std::vec::Drain<'_, Value>),
) -> std::io::Result<()> {
    let started = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let (mut loaded, mut bad) = (0usize, 0usize);
    let mut batch = Vec::with_capacity(BATCH);
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.is_object() => batch.push(v),
            _ => bad += 1,
        }
        if batch.len() == BATCH {
            loaded += batch.len();
            insert(batch.drain(..));
        }
    }
    loaded += batch.len();
    insert(batch.drain(..));
    eprintln!(
        "{who}: loaded {loaded} {what} from {} in {:.1?}{}",
        path.display(),
        started.elapsed(),
        if bad > 0 {
            format!(" ({bad} bad lines skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
