//! R2 event notifications: a put through the R2 binding protocol and a delete become R2's
//! notification messages on the configured queue.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use bindery::notifications::{Rule, Rules, apply};
use bindery::{AppState, Registry, router};
use bindery_core::SystemClock;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn pull(app: &axum::Router) -> Vec<serde_json::Value> {
    let req = Request::builder()
        .method("POST")
        .uri("/client/v4/accounts/a/queues/bucket-events/messages/pull")
        .body(Body::from(
            r#"{"batch_size":10,"visibility_timeout_ms":1000}"#,
        ))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["result"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_writes_send_notification_messages_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let rules = Rules {
        rules: vec![Rule {
            bucket: "watched".into(),
            queue: "bucket-events".into(),
            event_types: vec!["object-create".into(), "object-delete".into()],
            prefix: "uploads/".into(),
            suffix: String::new(),
        }],
    };
    rules.save(dir.path()).unwrap();
    let registry = Registry::new(dir.path(), SystemClock::shared(), None);
    let loaded = Rules::load(dir.path()).unwrap();
    assert_eq!(loaded, rules);
    assert_eq!(apply(&registry, &loaded).await.unwrap(), 1);
    let app = router(AppState::new(registry, None));

    for (key, body) in [("uploads/a.txt", "hello"), ("elsewhere/b.txt", "ignored")] {
        let op = format!(r#"{{"version":1,"method":"put","object":"{key}"}}"#);
        let req = Request::builder()
            .method("PUT")
            .uri("/")
            .header("x-bindery-binding", "r2/watched")
            .header("cf-r2-metadata-size", op.len())
            .body(Body::from(format!("{op}{body}")))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
    }
    let op = r#"{"version":1,"method":"delete","object":"uploads/a.txt"}"#;
    let req = Request::builder()
        .method("PUT")
        .uri("/")
        .header("x-bindery-binding", "r2/watched")
        .header("cf-r2-metadata-size", op.len())
        .body(Body::from(op))
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);

    // Delivery from the bucket's outbox is asynchronous; it must happen promptly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut messages = Vec::new();
    while messages.len() < 2 && Instant::now() < deadline {
        messages.extend(pull(&app).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap()).unwrap())
        .collect();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object"]["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("PutObject".to_owned(), "uploads/a.txt".to_owned()),
            ("DeleteObject".to_owned(), "uploads/a.txt".to_owned()),
        ]
    );
    assert_eq!(events[0]["bucket"], "watched");
    assert_eq!(events[0]["object"]["size"], 5);
}
