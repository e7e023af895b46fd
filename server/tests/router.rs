//! The router in-process (tower's `oneshot`): routing by `X-Bindery-Binding`, authentication,
//! and the error each protocol's client gets for bad requests.

use axum::body::Body;
use axum::http::{Request, Response};
use bindery::{AppState, Kind, Registry, router};
use bindery_core::{ManualClock, SharedClock};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "s3cret";

fn app(dir: &std::path::Path, token: Option<&str>) -> axum::Router {
    let clock: SharedClock = std::sync::Arc::new(ManualClock::new(1_795_000_000_000));
    router(AppState::new(
        Registry::new(dir, clock, None),
        token.map(str::to_owned),
    ))
}

fn strict_app(dir: &std::path::Path) -> axum::Router {
    let clock: SharedClock = std::sync::Arc::new(ManualClock::new(1_795_000_000_000));
    let declared = [(Kind::Kv, "declared".to_owned())].into_iter().collect();
    router(AppState::new(
        Registry::new(dir, clock, Some(declared)),
        None,
    ))
}

fn req(method: &str, uri: &str, binding: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(binding) = binding {
        b = b.header("x-bindery-binding", binding);
    }
    b.body(body.into()).unwrap()
}

async fn text(r: Response<Body>) -> String {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn reason(r: &Response<Body>) -> String {
    r.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn kv_put_get_list_delete_round_trip_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    let put = req(
        "PUT",
        "/dir%2Fa%20key?urlencoded=true&expiration_ttl=3600",
        Some("kv/ns"),
        "v1",
    );
    let mut put = put;
    put.headers_mut()
        .insert("cf-kv-metadata", r#"{"a":1}"#.parse().unwrap());
    assert_eq!(app.clone().oneshot(put).await.unwrap().status(), 200);

    let got = app
        .clone()
        .oneshot(req(
            "GET",
            "/dir%2Fa%20key?urlencoded=true",
            Some("kv/ns"),
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["cf-kv-metadata"], r#"{"a":1}"#);
    assert_eq!(text(got).await, "v1");

    let list = app
        .clone()
        .oneshot(req("GET", "/?prefix=dir%2F", Some("kv/ns"), Body::empty()))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(list).await).unwrap();
    assert_eq!(v["keys"][0]["name"], "dir/a key");
    assert_eq!(
        v["keys"][0]["metadata"], r#"{"a":1}"#,
        "list metadata is JSON text"
    );
    assert_eq!(v["list_complete"], true);

    let del = app
        .clone()
        .oneshot(req(
            "DELETE",
            "/dir%2Fa%20key?urlencoded=true",
            Some("kv/ns"),
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let miss = app
        .clone()
        .oneshot(req(
            "GET",
            "/dir%2Fa%20key?urlencoded=true",
            Some("kv/ns"),
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(miss.status(), 404);
}

#[tokio::test]
async fn namespaces_are_separate_and_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    app.clone()
        .oneshot(req("PUT", "/k", Some("kv/one"), "1"))
        .await
        .unwrap();
    let other = app
        .clone()
        .oneshot(req("GET", "/k", Some("kv/two"), Body::empty()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(dir.path().join("kv/one.redb").is_file());
    assert!(dir.path().join("kv/two.redb").is_file());
}

#[tokio::test]
async fn a_wrong_or_missing_token_gets_401_in_each_protocol_shape() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), Some(TOKEN));
    let mut wrong = req("GET", "/k", Some("kv/ns"), Body::empty());
    wrong
        .headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    let r = app.clone().oneshot(wrong).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(reason(&r), "missing or wrong bearer token");

    let r = app
        .clone()
        .oneshot(req("GET", "/", Some("r2/bucket"), Body::empty()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["cf-r2-error"]
            .to_str()
            .unwrap()
            .contains("10000")
    );

    let r = app
        .clone()
        .oneshot(req("POST", "/query", Some("d1/db"), "{}"))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "D1 errors are success:false with status 200"
    );
    assert!(text(r).await.contains("\"success\":false"));

    let r = app
        .clone()
        .oneshot(req("POST", "/message", Some("queue/q"), "{}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cf-queues-error-code"], "10000");

    let mut right = req("GET", "/k", Some("kv/ns"), Body::empty());
    right
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(app.clone().oneshot(right).await.unwrap().status(), 404);
    assert!(!dir.path().join("kv/nope.redb").exists());
}

#[tokio::test]
async fn the_health_endpoint_needs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let r = app(dir.path(), Some(TOKEN))
        .oneshot(req("GET", "/healthz", None, Body::empty()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(text(r).await.contains("\"status\":\"ok\""));
}

#[tokio::test]
async fn malformed_binding_headers_are_refused_without_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    for bad in [
        "kv",
        "kv/",
        "kv/../x",
        "kv/a/b",
        "nosuchkind/x",
        "kv/has space",
    ] {
        let r = app
            .clone()
            .oneshot(req("GET", "/k", Some(bad), Body::empty()))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body = text(r).await;
        assert!(body.contains("X-Bindery-Binding"), "{bad}: {body}");
    }
    let r = app
        .clone()
        .oneshot(req("GET", "/k", None, Body::empty()))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(text(r).await.contains("missing X-Bindery-Binding"));
    assert!(!dir.path().join("kv").exists());
}

#[tokio::test]
async fn strict_mode_refuses_undeclared_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let app = strict_app(dir.path());
    let r = app
        .clone()
        .oneshot(req("GET", "/k", Some("kv/other"), Body::empty()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an error the Worker sees, not a miss");
    assert!(
        reason(&r).contains("unknown binding kv/other"),
        "{}",
        reason(&r)
    );
    let r = app
        .clone()
        .oneshot(req("GET", "/k", Some("kv/declared"), Body::empty()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a miss in a declared namespace");
    assert_eq!(reason(&r), "");
}

#[tokio::test]
async fn malformed_protocol_headers_get_400_not_500() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    let mut put = req("PUT", "/k", Some("kv/ns"), "v");
    put.headers_mut()
        .insert("cf-kv-metadata", "{not json".parse().unwrap());
    let r = app.clone().oneshot(put).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(reason(&r).contains("CF-KV-Metadata"));

    let r = app
        .clone()
        .oneshot(req("PUT", "/k?expiration_ttl=soon", Some("kv/ns"), "v"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let mut get = req("GET", "/", Some("r2/bucket"), Body::empty());
    get.headers_mut()
        .insert("cf-r2-request", "{oops".parse().unwrap());
    let r = app.clone().oneshot(get).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["cf-r2-error"]
            .to_str()
            .unwrap()
            .contains("10029")
    );

    let mut put = req("PUT", "/", Some("r2/bucket"), "{\"version\":1}");
    put.headers_mut()
        .insert("cf-r2-metadata-size", "999".parse().unwrap());
    let r = app.clone().oneshot(put).await.unwrap();
    assert_eq!(r.status(), 400, "a body shorter than its metadata size");

    let mut msg = req("POST", "/message", Some("queue/q"), "{}");
    msg.headers_mut()
        .insert("x-msg-fmt", "yaml".parse().unwrap());
    let r = app.clone().oneshot(msg).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["cf-queues-error-cause"]
            .to_str()
            .unwrap()
            .contains("yaml")
    );

    let r = app
        .clone()
        .oneshot(req("POST", "/query", Some("d1/db"), "not json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(text(r).await.contains("not JSON"));
}

#[tokio::test]
async fn oversized_bodies_get_the_platform_limit_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    let big = vec![b'x'; 25 * 1024 * 1024 + 1];
    let r = app
        .clone()
        .oneshot(req("PUT", "/big", Some("kv/ns"), big))
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(reason(&r).starts_with("Value length of"), "{}", reason(&r));

    let mut msg = req("POST", "/message", Some("queue/q"), vec![b'y'; 200_000]);
    msg.headers_mut()
        .insert("x-msg-fmt", "text".parse().unwrap());
    let r = app.clone().oneshot(msg).await.unwrap();
    assert_eq!(r.status(), 413, "{}", reason(&r));
    let r = app
        .clone()
        .oneshot(req(
            "POST",
            "/message",
            Some("queue/q"),
            vec![b'y'; 2_000_000],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "past the server's read limit");

    let bulk = serde_json::json!({"keys": vec!["k"; 300_000]}).to_string();
    let r = app
        .clone()
        .oneshot(req("POST", "/bulk/get", Some("kv/ns"), bulk))
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn queue_sends_answer_metadata_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), None);
    let mut msg = req("POST", "/message", Some("queue/jobs"), r#"{"a":1}"#);
    msg.headers_mut()
        .insert("x-msg-fmt", "json".parse().unwrap());
    let r = app.clone().oneshot(msg).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["metadata"]["metrics"]["backlogCount"], 1);
    assert_eq!(
        v["metadata"]["metrics"]["oldestMessageTimestamp"],
        1_795_000_000_000u64
    );
    let r = app
        .clone()
        .oneshot(req("GET", "/metrics", Some("queue/jobs"), Body::empty()))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["backlogCount"], 1);
}

#[tokio::test]
async fn pull_consumers_lease_and_ack_through_the_rest_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), Some(TOKEN));
    let auth = format!("Bearer {TOKEN}");
    for body in ["one", "two"] {
        let mut msg = req("POST", "/message", Some("queue/pulled"), body);
        msg.headers_mut()
            .insert("x-msg-fmt", "text".parse().unwrap());
        msg.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        assert_eq!(app.clone().oneshot(msg).await.unwrap().status(), 200);
    }
    let base = "/client/v4/accounts/acct/queues/pulled/messages";
    let unauthorized = app
        .clone()
        .oneshot(req("POST", &format!("{base}/pull"), None, "{}"))
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let mut pull = req(
        "POST",
        &format!("{base}/pull"),
        None,
        r#"{"batch_size":10,"visibility_timeout_ms":60000}"#,
    );
    pull.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let r = app.clone().oneshot(pull).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["success"], true);
    let messages = v["result"]["messages"].as_array().unwrap().clone();
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["one", "two"]);
    assert_eq!(messages[0]["attempts"], 1);
    assert_eq!(messages[0]["metadata"]["CF-Content-Type"], "text");

    let lease = |i: usize| messages[i]["lease_id"].as_str().unwrap().to_owned();
    let ack_body = serde_json::json!({
        "acks": [{"lease_id": lease(0)}],
        "retries": [{"lease_id": lease(1), "delay_seconds": 0}],
    })
    .to_string();
    let mut ack = req("POST", &format!("{base}/ack"), None, ack_body);
    ack.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let r = app.clone().oneshot(ack).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["result"]["ackCount"], 1);
    assert_eq!(v["result"]["retryCount"], 1);

    let mut again = req("POST", &format!("{base}/pull"), None, "{}");
    again
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let v: serde_json::Value =
        serde_json::from_str(&text(app.clone().oneshot(again).await.unwrap()).await).unwrap();
    let left = v["result"]["messages"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{v}");
    assert_eq!(left[0]["body"], "two");
    assert_eq!(left[0]["attempts"], 2);
}
