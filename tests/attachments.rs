//! Attachments (issue 11, "Attachments"): a file attached on the forge reaches
//! the model as a file part, fetched with the token from the instance's own host
//! only; a link to another host stays text, and is never fetched. Real opencode,
//! the fake model and forge.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use support::Step;
use support::bot_env::{BotEnv, tea, tea_comment};

/// A 1×1 PNG.
const PNG: [u8; 67] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0a, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Another host on loopback: records every request it gets, with its headers.
async fn other_host() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("{uri} {headers:?}"));
            ([(axum::http::header::CONTENT_TYPE, "image/png")], PNG.to_vec())
        }
    });
    (support::serve_on_loopback(app, "another host").await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_attached_on_the_forge_reaches_the_model_and_other_hosts_are_never_asked() {
    let mut t = BotEnv::with_bot_settings("attachment_max_mib = 1", "", Vec::new()).await;
    let (port, other) = other_host().await;
    t.forge.add_attachment("5b1e6c2a-aaaa", "image/png", &PNG);
    t.forge.add_attachment("9f00-too-big", "text/plain", &vec![b'x'; 2 * 1024 * 1024]);
    t.env.model.on("MARK-ATTACH", vec![Step::Answer("saw it".into())]);
    let text = format!(
        "@kugetsu MARK-ATTACH what is wrong here? ![shot](/attachments/5b1e6c2a-aaaa) \
         ![elsewhere](http://127.0.0.1:{port}/attachments/5b1e6c2a-aaaa) [big log](/attachments/9f00-too-big)"
    );
    let d = tea(&tea_comment(81, 5101, &text, "alice"), "a-1");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments("acme/widget", 81, 1).await;
    assert!(answers[0].body.contains("saw it"), "{}", answers[0].body);

    let request = t.env.model.requests_for("MARK-ATTACH")[0].to_string();
    let png = base64::engine::general_purpose::STANDARD.encode(PNG);
    assert!(request.contains(&format!("data:image/png;base64,{png}")), "the image is a file part: {request}");
    assert_eq!(request.matches("data:image/png").count(), 1, "one image, not the other host's: {request}");
    assert!(request.contains("given with this message: link 1 (image/png, 67 bytes)"), "{request}");
    assert!(request.contains("link 2 (larger than the limit of 1 MiB)"), "{request}");
    assert!(request.contains(&format!("http://127.0.0.1:{port}/attachments/")), "the other link stays text");
    // Fetched from the forge, with the token; the other host was never asked.
    let fetched: Vec<String> = t.forge.calls().into_iter().filter(|c| c.starts_with("GET /attachments/")).collect();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    assert!(fetched.iter().all(|c| c.contains("[token tea-token-canary]")), "{fetched:?}");
    assert!(other.lock().unwrap().is_empty(), "another host was asked: {:?}", other.lock().unwrap());
    t.stop().await;
}
