//! Small encodings shared by the protocols: form-encoded queries, percent-decoded path
//! segments, JSON that is safe in a header.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// Parses a form-encoded query (`+` is a space) into name/value pairs, in order.
/// Pairs that are not valid UTF-8 after decoding are decoded lossily.
pub fn form_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Decodes one percent-encoded path segment (`+` stays `+`).
///
/// # Errors
///
/// When the decoded bytes are not UTF-8.
pub fn percent_decode_path(segment: &str) -> Result<String, String> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the key {segment:?} does not decode to UTF-8"))
}

/// JSON text with every non-ASCII character escaped, so that it fits in a header value.
pub fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_queries_decode_plus_as_space() {
        let q = form_query(Some("prefix=a%2Bb+%26%3D&key_count_limit=2&flag"));
        assert_eq!(q[0], ("prefix".into(), "a+b &=".into()));
        assert_eq!(q[1], ("key_count_limit".into(), "2".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
    }

    #[test]
    fn path_segments_keep_plus() {
        assert_eq!(percent_decode_path("a+b%20c%25d%23e").unwrap(), "a+b c%d#e");
        assert_eq!(
            percent_decode_path("dir%2Fa%20key%3F&=").unwrap(),
            "dir/a key?&="
        );
        assert!(percent_decode_path("%ff").is_err());
    }

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let v = serde_json::json!({"k": "caf\u{e9} \u{1f600}"});
        let s = ascii_json(&v);
        assert!(s.is_ascii());
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }
}
