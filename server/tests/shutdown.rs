//! Clean shutdown: a request in flight when shutdown starts still completes, its write is
//! durable, and every store is closed (its file can be opened again) when serving returns.

use bindery::{AppState, Registry};
use bindery_core::SystemClock;
use bindery_core::kv::{GetOptions, KvStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_closes_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let listener = bindery::serve::bind("127.0.0.1:0", false).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(Registry::new(dir.path(), SystemClock::shared(), None), None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bindery::serve::serve_on(listener, state, async move {
        let _ = stopped.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "PUT /in-flight HTTP/1.1\r\nHost: x\r\nX-Bindery-Binding: kv/ns\r\nContent-Length: 11\r\n\r\nhello";
    conn.write_all(head.as_bytes()).await.unwrap();
    // Bounded wait for the server to parse the request head before shutdown starts.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    conn.write_all(b" world").await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut response),
    )
    .await
    .expect("the in-flight request was answered")
    .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("serving stopped")
        .unwrap()
        .unwrap();
    // The store was closed: this process can open its file again, and the write is there.
    let kv = bindery_kv::KvNamespace::open(dir.path().join("kv/ns.redb"))
        .await
        .expect("the namespace file was released");
    let value = kv.get("in-flight", GetOptions::default()).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"hello world"[..]));
}
