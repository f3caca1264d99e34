//! Protocol fuzzing against a live server: thousands of generated frames — well-formed, nearly
//! well-formed and garbage — on one socket. The server must answer each bad one with an error
//! frame, never crash, keep the connection usable, and store nothing a frame did not rightly ask.
//! Also the replay of the cargo-fuzz corpus (`fuzz/`) through the fuzz targets' own checks.
use futures_util::{SinkExt, StreamExt};
use parley_common::{MessagePage, ServerFrame};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestRunner},
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};

use crate::{
    helpers::{spawn_open, Backend},
    on_both_backends,
};

on_both_backends!(generated_frames_never_break_the_server);

/// The checks of the cargo-fuzz targets (`fuzz/`), the same file they build from.
#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_checks;

/// Every committed input of the cargo-fuzz corpus (`fuzz/corpus/`, minimized from the nightly runs,
/// and the hand-written `fuzz/seeds/`) through the targets' checks: CI replays on stable, on every
/// run, what the fuzzer found worth keeping.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 3] = [
        ("client_frame", fuzz_checks::client_frame),
        ("request_bodies", fuzz_checks::request_bodies),
        ("server_frame", fuzz_checks::server_frame),
    ];
    for (target, check) in targets {
        for folder in ["seeds", "corpus"] {
            let dir = root.join(folder).join(target);
            let mut inputs = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&bytes));
                assert!(outcome.is_ok(), "{} fails the {target} checks", path.display());
                inputs += 1;
            }
            assert!(inputs > 0, "{} is empty", dir.display());
        }
    }
}

const FRAMES: usize = 1500;

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Frames with a real or made-up `type` and fields of right or wrong kinds, aimed at `chat`.
fn frame(chat: i64) -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("send"),
        Just("read"),
        Just("typing"),
        Just("sync"),
        Just("ping"),
        Just("hello"),
        Just("ack"),
        Just(""),
    ];
    let chat_id = prop_oneof![Just(json!(chat)), any::<i64>().prop_map(|n| json!(n)), any_json()];
    let shaped = (kind, chat_id, any_json(), any_json(), ".{0,64}").prop_map(|(kind, chat_id, a, b, body)| {
        json!({"type": kind, "chat_id": chat_id, "client_id": a, "up_to": b, "body": body, "since": b}).to_string()
    });
    prop_oneof![shaped, any_json().prop_map(|v| v.to_string()), ".{0,200}"]
}

async fn generated_frames_never_break_the_server(backend: Backend) {
    let app = spawn_open(backend, |c| c.ws_frames_per_sec = 1_000_000).await;
    let ada = app.user("Ada").await;
    app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;

    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", ada.token).parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (mut sink, mut stream) = socket.split();
    // Read everything the server says, so our side never stalls it.
    let reader = tokio::spawn(async move {
        let (mut errors, mut pongs, mut closed) = (0usize, 0usize, None);
        while let Some(Ok(message)) = stream.next().await {
            match message {
                WsMessage::Text(text) => {
                    match serde_json::from_str::<ServerFrame>(&text).expect("the server speaks the protocol") {
                        ServerFrame::Error { .. } => errors += 1,
                        ServerFrame::Pong => pongs += 1,
                        _ => {}
                    }
                }
                WsMessage::Close(frame) => closed = frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
        (errors, pongs, closed)
    });

    let mut runner = TestRunner::new(Config { cases: FRAMES as u32, ..Config::default() });
    let strategy = frame(chat);
    let (mut sent_sends, mut pings) = (0, 0);
    for n in 0..FRAMES {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        sent_sends += usize::from(text.contains(r#""type":"send""#));
        pings += usize::from(matches!(serde_json::from_str(&text), Ok(parley_common::ClientFrame::Ping)));
        sink.send(WsMessage::Text(text.into())).await.unwrap();
        // A good frame now and then: more than 20 bad ones in a row is a flood, by design.
        if n % 10 == 9 {
            sink.send(WsMessage::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
        }
    }
    sink.send(WsMessage::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
    // Let the last answers arrive, then close our side.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sink.close().await.unwrap();
    let (errors, pongs, closed) = reader.await.unwrap();
    // The server never closed it on its own (no 4xxx close: not too slow, no flood), and it
    // answered every ping to the end.
    assert!(!matches!(closed, Some(code) if code != 1000), "closed by the server with {closed:?}");
    assert_eq!(pongs, pings + FRAMES / 10 + 1, "every ping answered, generated ones too");
    assert!(errors > FRAMES / 2, "bad frames get error frames ({errors})");
    assert!(app.client.get(app.at("/healthz")).send().await.unwrap().status().is_success());

    // Whatever was stored came from well-formed sends into Ada's own chat.
    let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages?limit=100"), &ada.token).await;
    assert!(page.messages.len() <= sent_sends);
    for message in &page.messages {
        assert_eq!(message.sender_id, ada.user.id);
        assert!(uuid::Uuid::parse_str(&message.client_id).is_ok());
        assert!(!message.body.trim().is_empty());
    }
}
