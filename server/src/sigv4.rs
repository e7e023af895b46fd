//! AWS Signature Version 4 verification for the S3 API: the `Authorization` header form and
//! presigned URLs (`X-Amz-Signature` in the query).
//!
//! The canonical request is rebuilt from what arrived (method, the path as sent, the query
//! re-encoded and sorted, the signed headers, the payload hash header) and signed with the
//! server's secret; the signatures are compared in constant time. Requests more than 15
//! minutes from the server's clock are refused, as are expired presigned URLs. Chunk
//! signatures of `aws-chunked` bodies are not verified: the headers, including
//! `x-amz-content-sha256`, are.

use axum::http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};

use crate::app::constant_time_eq;

/// The access key and secret the S3 API accepts.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a signature was refused; the S3 code and message to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// `AccessDenied`, `SignatureDoesNotMatch`, `InvalidAccessKeyId`, ...
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

fn fail(code: &'static str, message: impl Into<String>) -> AuthFailure {
    AuthFailure {
        code,
        message: message.into(),
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, the rest is `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The raw query's pairs, percent-decoded (SigV4 query values do not use `+` for space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn canonical_query(pairs: &[(String, String)], skip_signature: bool) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !(skip_signature && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_headers(headers: &HeaderMap, signed: &[&str]) -> Result<String, AuthFailure> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(fail(
                "AccessDenied",
                format!("signed header {name} is missing from the request"),
            ));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Parses `20261127T181500Z` into ms since the epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// What the signature covers, gathered from either form.
struct Parts<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
    amz_date: String,
    payload_hash: String,
    presigned: bool,
    expires_secs: Option<u64>,
}

fn split_credential(c: &str) -> Result<(&str, &str, &str, &str), AuthFailure> {
    let mut it = c.split('/');
    match (it.next(), it.next(), it.next(), it.next(), it.next()) {
        (Some(k), Some(d), Some(r), Some(s), Some("aws4_request")) => Ok((k, d, r, s)),
        _ => Err(fail(
            "AuthorizationHeaderMalformed",
            format!("the credential {c:?} is not <key>/<date>/<region>/<service>/aws4_request"),
        )),
    }
}

/// Verifies the request's signature against `creds` at `now_ms`.
///
/// # Errors
///
/// An [`AuthFailure`] naming the S3 error code.
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    creds: &Credentials,
    now_ms: u64,
) -> Result<(), AuthFailure> {
    let query = uri.query().unwrap_or("");
    let pairs = query_pairs(query);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let auth_header = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let parts = if let Some(auth) = auth_header.as_deref() {
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
            fail(
                "AccessDenied",
                "only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported",
            )
        })?;
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for item in rest.split(',') {
            let item = item.trim();
            if let Some(v) = item.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = item.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = item.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(fail(
                "AuthorizationHeaderMalformed",
                "the Authorization header needs Credential, SignedHeaders and Signature",
            ));
        };
        let (access_key, date, region, service) = split_credential(credential)?;
        let header = |n: &str| {
            headers
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        };
        Parts {
            access_key,
            date,
            region,
            service,
            signed_headers: signed.split(';').collect(),
            signature,
            amz_date: header("x-amz-date")
                .ok_or_else(|| fail("AccessDenied", "the x-amz-date header is missing"))?,
            payload_hash: header("x-amz-content-sha256")
                .unwrap_or_else(|| "UNSIGNED-PAYLOAD".to_owned()),
            presigned: false,
            expires_secs: None,
        }
    } else if get("X-Amz-Algorithm") == Some("AWS4-HMAC-SHA256") {
        let missing = |n: &str| {
            fail(
                "AuthorizationQueryParametersError",
                format!("{n} is missing"),
            )
        };
        let credential = get("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?;
        let (access_key, date, region, service) = split_credential(credential)?;
        Parts {
            access_key,
            date,
            region,
            service,
            signed_headers: get("X-Amz-SignedHeaders")
                .ok_or_else(|| missing("X-Amz-SignedHeaders"))?
                .split(';')
                .collect(),
            signature: get("X-Amz-Signature").ok_or_else(|| missing("X-Amz-Signature"))?,
            amz_date: get("X-Amz-Date")
                .ok_or_else(|| missing("X-Amz-Date"))?
                .to_owned(),
            payload_hash: "UNSIGNED-PAYLOAD".to_owned(),
            presigned: true,
            expires_secs: Some(
                get("X-Amz-Expires")
                    .and_then(|e| e.parse().ok())
                    .ok_or_else(|| missing("X-Amz-Expires"))?,
            ),
        }
    } else {
        return Err(fail(
            "AccessDenied",
            "the request is not signed (AWS Signature Version 4 is required)",
        ));
    };

    if parts.access_key != creds.access_key_id {
        return Err(fail(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    }
    let signed_at = parse_amz_date(&parts.amz_date)
        .ok_or_else(|| fail("AccessDenied", format!("invalid date {:?}", parts.amz_date)))?;
    if !parts.amz_date.starts_with(parts.date) {
        return Err(fail(
            "SignatureDoesNotMatch",
            "the credential date does not match the request date",
        ));
    }
    match parts.expires_secs {
        Some(expires) => {
            if now_ms > signed_at + expires.saturating_mul(1000) {
                return Err(fail("AccessDenied", "Request has expired"));
            }
        }
        None => {
            if now_ms.abs_diff(signed_at) > 15 * 60 * 1000 {
                return Err(fail(
                    "RequestTimeTooSkewed",
                    "The difference between the request time and the server's time is too large.",
                ));
            }
        }
    }

    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        uri.path(),
        canonical_query(&pairs, parts.presigned),
        canonical_headers(headers, &parts.signed_headers)?,
        parts.signed_headers.join(";"),
        parts.payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        parts.date, parts.region, parts.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        parts.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        parts.date.as_bytes(),
    );
    key = hmac_sha256(&key, parts.region.as_bytes());
    key = hmac_sha256(&key, parts.service.as_bytes());
    key = hmac_sha256(&key, b"aws4_request");
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if constant_time_eq(expected.as_bytes(), parts.signature.as_bytes()) {
        Ok(())
    } else {
        tracing::debug!(%canonical_request, "SigV4 mismatch");
        Err(fail(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600_000));
        assert_eq!(parse_amz_date("2013-05-24"), None);
    }

    /// The GET Object example of AWS's SigV4 documentation for S3.
    #[test]
    fn the_documented_s3_example_verifies() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        headers.insert("range", "bytes=0-9".parse().unwrap());
        headers.insert(
            "x-amz-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                .parse()
                .unwrap(),
        );
        let uri: Uri = "/test.txt".parse().unwrap();
        let now = 1_369_353_600_000;
        assert_eq!(verify(&Method::GET, &uri, &headers, &creds, now), Ok(()));
        let wrong = Credentials {
            secret_access_key: "other".into(),
            ..creds.clone()
        };
        assert_eq!(
            verify(&Method::GET, &uri, &headers, &wrong, now)
                .unwrap_err()
                .code,
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            verify(&Method::GET, &uri, &headers, &creds, now + 3_600_000)
                .unwrap_err()
                .code,
            "RequestTimeTooSkewed"
        );
    }
}
