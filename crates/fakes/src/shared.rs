//! What the fakes share.

use std::collections::VecDeque;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Serves every request on `listener` (whatever its path) with `respond`,
/// in a tokio task: the method, the URI, the headers and the body, read up
/// to `max_body` bytes (a longer or broken body reads as empty).
pub(crate) fn serve<R>(listener: tokio::net::TcpListener, max_body: usize, respond: R)
where
    R: Fn(&Method, &Uri, &HeaderMap, &[u8]) -> Response<Body> + Clone + Send + Sync + 'static,
{
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let respond = respond.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, max_body)
                .await
                .unwrap_or_default();
            respond(&parts.method, &parts.uri, &parts.headers, &bytes)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// The name-value pairs of a query string or an
/// `application/x-www-form-urlencoded` body (`+` is a space).
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

/// A percent-encoded path segment, decoded (`+` stays a plus).
pub(crate) fn pct_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One form-encoded value, decoded (`+` is a space): an OAuth client id or
/// secret inside a Basic header (RFC 6749 §2.3.1).
pub(crate) fn form_decode(s: &str) -> String {
    pct_decode(&s.replace('+', " "))
}

/// Every byte but RFC 3986's unreserved ones is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for a query value, as a vendor writes a paging link.
pub(crate) fn pct_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The first value of `key` in a parsed form.
pub(crate) fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A header's value, when it is text.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = header_str(headers, header::AUTHORIZATION.as_str())?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `(user, password)` of an `Authorization: Basic` header, as sent.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = header_str(headers, header::AUTHORIZATION.as_str())?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let (user, pass) = s.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_paths_and_basic_credentials_decode_as_the_vendors_encode_them() {
        assert_eq!(
            parse_form("q=SELECT+Id%2C+Name&&limit=5&flag&bad=%zz%4"),
            vec![
                ("q".to_string(), "SELECT Id, Name".to_string()),
                ("limit".to_string(), "5".to_string()),
                ("flag".to_string(), String::new()),
                ("bad".to_string(), "%zz%4".to_string()),
            ]
        );
        // A path keeps its plus; a form value's plus is a space.
        assert_eq!(pct_decode("a+b%40x.com"), "a+b@x.com");
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
    }

    #[test]
    fn paging_cursors_are_encoded_and_basic_credentials_read_as_sent() {
        assert_eq!(
            pct_encode("ZmFrZTo1/+= é-_.~"),
            "ZmFrZTo1%2F%2B%3D%20%C3%A9-_.~"
        );
        let mut headers = HeaderMap::new();
        // base64("id+1:se:cret")
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic aWQrMTpzZTpjcmV0"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("id+1".to_string(), "se:cret".to_string()))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok "),
        );
        assert_eq!(basic_credentials(&headers), None);
        assert_eq!(bearer(&headers), Some("tok"));
    }
}
