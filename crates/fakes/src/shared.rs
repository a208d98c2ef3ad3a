//! What the fakes share.

use std::collections::VecDeque;

use axum::http::HeaderValue;

/// The canned answer of the first pattern `target` contains, once its
/// `skip` matching calls have passed: `(pattern, skip, times, status, body)`.
pub(crate) fn take_matching(
    fails: &mut VecDeque<(String, usize, usize, u16, String)>,
    target: &str,
) -> Option<(u16, String)> {
    let i = fails
        .iter()
        .position(|(p, ..)| target.contains(p.as_str()))?;
    let (_, skip, n, status, body) = &mut fails[i];
    if *skip > 0 {
        *skip -= 1;
        return None;
    }
    let answer = (*status, body.clone());
    *n -= 1;
    if *n == 0 {
        fails.remove(i);
    }
    Some(answer)
}

/// An HTTP date (RFC 7231) of a clock reading in ms.
pub(crate) fn http_date(ms: i64) -> Option<HeaderValue> {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)?;
    HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}
