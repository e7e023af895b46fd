//! Runs the chat-room example over real WebSockets: two clients, broadcast, storage-backed
//! history, auto-response, and a room that hibernates between messages.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat_room.rs"]
mod chat_room;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Frame;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(addr: std::net::SocketAddr, user: &str) -> Client {
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/room/lobby/ws?user={user}"))
            .await
            .expect("connect");
    ws
}

/// Reads text frames until one equals `want`; fails after 10 s.
async fn expect_text(ws: &mut Client, want: &str) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = ws.next().await {
            if let Ok(Frame::Text(t)) = frame
                && t.as_str() == want
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "never received {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_broadcasts_over_real_websockets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let data = dir.path().to_owned();
    let server = tokio::spawn(async move { chat_room::serve(listener, &data).await });

    let mut ann = join(addr, "ann").await;
    expect_text(&mut ann, "* ann joined").await;
    let mut bob = join(addr, "bob").await;
    // Bob gets the stored history first, then his own join.
    expect_text(&mut bob, "* ann joined").await;
    expect_text(&mut bob, "* bob joined").await;
    expect_text(&mut ann, "* bob joined").await;

    ann.send(Frame::Text("hello".into())).await.expect("send");
    expect_text(&mut bob, "ann: hello").await;
    expect_text(&mut ann, "ann: hello").await;

    bob.send(Frame::Text("ping".into())).await.expect("send");
    expect_text(&mut bob, "pong").await;

    bob.close(None).await.expect("close");
    expect_text(&mut ann, "* bob left").await;
    server.abort();
}
