//! The chat room from the platform's WebSocket hibernation docs, over real WebSockets.
//!
//! Each room is one Durable Object. A browser (or any WebSocket client) connects to
//! `/room/<name>/ws?user=<name>`; the axum handler offers the socket to the room's object
//! through `stub.connect`, then pumps frames both ways. The object accepts the connection as
//! hibernatable (tagged with the user), keeps the user name as the connection's attachment,
//! stores every message in its storage, and broadcasts it to everyone in the room. Idle rooms
//! are evicted after 10 s while their sockets stay open; the next message wakes the room.
//! `ping` is answered with `pong` by the auto-response, without waking the room.
//!
//! Run: `cargo run -p bindery-durable --example chat_room` and open http://127.0.0.1:8787/
//! (`CHAT_ADDR` changes the address, `CHAT_DATA` the data folder).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxumState};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bindery_core::durable::{
    Connection, ConnectionSink, DurableError, DurableNamespace, DurableObject, DurableResult,
    HttpRequest, ListOptions, Message, State, async_trait,
};
use bindery_durable::{DurableRuntime, Namespace};
use bytes::Bytes;
use tokio::sync::mpsc;

/// Typed RPC of a room (used by tools and tests; browsers use the WebSocket).
pub enum RoomRequest {
    /// The last messages, oldest first.
    History(usize),
}

/// One chat room.
pub struct ChatRoom {
    state: State,
}

impl ChatRoom {
    fn broadcast(&self, text: &str) {
        for c in self.state.get_connections(None) {
            let _ = c.send(Message::Text(text.to_owned()));
        }
    }

    fn history(&self, n: usize) -> DurableResult<Vec<String>> {
        let mut rows = self.state.storage().list(&ListOptions {
            prefix: Some("msg:".into()),
            reverse: true,
            limit: Some(n.max(1)),
            ..Default::default()
        })?;
        rows.reverse();
        Ok(rows
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect())
    }

    fn store(&self, line: &str) -> DurableResult<()> {
        let s = self.state.storage();
        let seq = s.get("seq")?.map_or(0, |b| {
            u64::from_le_bytes(b.as_ref().try_into().unwrap_or([0; 8]))
        }) + 1;
        s.put("seq", Bytes::copy_from_slice(&seq.to_le_bytes()))?;
        s.put(
            &format!("msg:{seq:012}"),
            Bytes::copy_from_slice(line.as_bytes()),
        )
    }
}

#[async_trait]
impl DurableObject for ChatRoom {
    type Request = RoomRequest;
    type Response = Vec<String>;

    async fn call(&mut self, request: RoomRequest) -> DurableResult<Vec<String>> {
        match request {
            RoomRequest::History(n) => self.history(n),
        }
    }

    async fn connect(
        &mut self,
        connection: &Connection,
        request: HttpRequest,
    ) -> DurableResult<Vec<String>> {
        let user = request
            .header("x-user")
            .filter(|u| !u.is_empty() && u.len() <= 64)
            .ok_or_else(|| DurableError::invalid("a user name of 1 to 64 bytes is required"))?
            .to_owned();
        connection.serialize_attachment(Bytes::copy_from_slice(user.as_bytes()))?;
        self.state
            .set_auto_response(Some(("ping".into(), "pong".into())))?;
        for line in self.history(20)? {
            connection.send(Message::Text(line))?;
        }
        let joined = format!("* {user} joined");
        self.store(&joined)?;
        // The new connection joins `get_connections` once `connect` returns: greet it
        // directly, and everyone else through the broadcast.
        self.broadcast(&joined);
        connection.send(Message::Text(joined))?;
        Ok(vec![format!("user:{user}")])
    }

    async fn connection_message(
        &mut self,
        connection: &Connection,
        message: Message,
    ) -> DurableResult<()> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        let user = connection
            .deserialize_attachment()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "?".into());
        let line = format!("{user}: {text}");
        // Stored first: the broadcast leaves only once the message is durable.
        self.store(&line)?;
        self.broadcast(&line);
        Ok(())
    }

    async fn connection_close(
        &mut self,
        connection: &Connection,
        _code: u16,
        _reason: &str,
    ) -> DurableResult<()> {
        if let Some(user) = connection.deserialize_attachment() {
            let left = format!("* {} left", String::from_utf8_lossy(&user));
            self.store(&left)?;
            self.broadcast(&left);
        }
        Ok(())
    }
}

/// Frames the object sends, forwarded to the socket by the connection's task.
enum Outgoing {
    Frame(Message),
    Close(u16, String),
}

struct SocketSink(mpsc::UnboundedSender<Outgoing>);

impl ConnectionSink for SocketSink {
    fn send(&self, message: Message) -> DurableResult<()> {
        self.0
            .send(Outgoing::Frame(message))
            .map_err(|_| DurableError::invalid("the socket is closed"))
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self.0.send(Outgoing::Close(code, reason.to_owned()));
    }
}

#[derive(serde::Deserialize)]
struct Who {
    user: String,
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn upgrade(
    AxumState(rooms): AxumState<Namespace<ChatRoom>>,
    Path(room): Path<String>,
    Query(who): Query<Who>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| pump(rooms, room, who.user, socket))
        .into_response()
}

/// Offers the socket to the room, then forwards frames both ways until either side closes.
async fn pump(rooms: Namespace<ChatRoom>, room: String, user: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut request = HttpRequest::get(format!("/room/{room}/ws"));
    request.headers.push(("x-user".into(), user));
    let inbound = match rooms
        .get_by_name(&room)
        .connect(request, Arc::new(SocketSink(tx)))
        .await
    {
        Ok(i) => i,
        Err(e) => {
            let _ = socket
                .send(ws::Message::Close(Some(ws::CloseFrame {
                    code: 1008,
                    reason: e.to_string().into(),
                })))
                .await;
            return;
        }
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outgoing::Frame(Message::Text(t))) => {
                    if socket.send(ws::Message::Text(t.into())).await.is_err() { break; }
                }
                Some(Outgoing::Frame(Message::Binary(b))) => {
                    if socket.send(ws::Message::Binary(b)).await.is_err() { break; }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = socket.send(ws::Message::Close(Some(ws::CloseFrame { code, reason: reason.into() }))).await;
                    return;
                }
                None => break,
            },
            frame = socket.recv() => match frame {
                Some(Ok(ws::Message::Text(t))) => inbound.deliver(Message::Text(t.as_str().to_owned())),
                Some(Ok(ws::Message::Binary(b))) => inbound.deliver(Message::Binary(b)),
                Some(Ok(ws::Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| (f.code, f.reason.as_str().to_owned()));
                    inbound.closed(code, &reason);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    inbound.closed(1006, "connection lost");
}

/// The chat server's routes.
pub fn router(rooms: Namespace<ChatRoom>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/room/{room}/ws", get(upgrade))
        .with_state(rooms)
}

/// Opens the rooms namespace in `data` and serves on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    data: &std::path::Path,
) -> std::io::Result<()> {
    let runtime = DurableRuntime::builder()
        .open(data)
        .await
        .map_err(std::io::Error::other)?;
    let rooms = runtime
        .namespace("rooms", |state| ChatRoom { state })
        .await
        .map_err(std::io::Error::other)?;
    axum::serve(listener, router(rooms)).await
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("CHAT_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8787".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let data = std::env::var("CHAT_DATA").unwrap_or_else(|_| "chat-data".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("chat rooms on http://{addr}/ (data in {data})");
    serve(listener, std::path::Path::new(&data)).await
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>Bindery chat</title>
<p>Room <input id="room" value="lobby"> as <input id="user" value="guest">
<button onclick="join()">join</button></p>
<pre id="log" style="height:20em;overflow:auto;border:1px solid #ccc"></pre>
<input id="text" size="60"> <button onclick="say()">send</button>
<script>
let ws;
function join() {
  const room = document.getElementById('room').value, user = document.getElementById('user').value;
  ws = new WebSocket(`ws://${location.host}/room/${encodeURIComponent(room)}/ws?user=${encodeURIComponent(user)}`);
  ws.onmessage = e => { const l = document.getElementById('log'); l.textContent += e.data + "\n"; l.scrollTop = l.scrollHeight; };
  ws.onclose = e => { document.getElementById('log').textContent += `(closed ${e.code} ${e.reason})\n`; };
}
function say() { const t = document.getElementById('text'); if (ws && t.value) { ws.send(t.value); t.value = ''; } }
</script>
"#;
