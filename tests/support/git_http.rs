//! A forge's git endpoint on 127.0.0.1: real `git http-backend` (smart HTTP,
//! fetch and push) behind HTTP Basic auth, for a private repository. It records
//! every request and whether it was authorised.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The Basic-auth user, when the password was the right token.
    pub user: Option<String>,
}

#[derive(Clone)]
pub struct GitHttp {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// While set, every request gets 503, as from a forge that is restarting.
    down: Arc<AtomicBool>,
}

impl GitHttp {
    /// Serves the bare repositories under `root` (`<owner>/<repo>.git`) to
    /// clients that send `token` as their Basic-auth password.
    pub async fn start(root: &Path, token: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (root, token, log, is_down) = (root.to_path_buf(), token.to_owned(), seen.clone(), down.clone());
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (root, token, log, is_down) = (root.clone(), token.clone(), log.clone(), is_down.clone());
            async move {
                if is_down.load(Ordering::SeqCst) {
                    return Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(Body::empty()).unwrap();
                }
                let user = authorised_user(&headers, &token);
                let path = uri.path().to_owned();
                log.lock().unwrap().push(Seen { method: method.to_string(), path: path.clone(), user: user.clone() });
                let Some(user) = user else {
                    return Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("www-authenticate", "Basic realm=\"git\"")
                        .body(Body::empty())
                        .unwrap();
                };
                http_backend(&root, &method, &uri, &headers, &user, body).await
            }
        });
        let port = super::serve_on_loopback(app, "git http").await;
        Self { port, seen, down }
    }

    /// Takes the remote away (503 for everything) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn authorised_user(headers: &HeaderMap, token: &str) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (password == token).then(|| user.to_owned())
}

/// Runs `git http-backend` as a CGI program for one request.
async fn http_backend(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    user: &str,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.expect("git http-backend runs");
    let _ = feed.await;
    cgi_response(&output.stdout)
}

/// Turns CGI output (headers, a blank line, the body) into an HTTP response.
fn cgi_response(out: &[u8]) -> Response {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let (head_end, body_start) = split.unwrap_or((0, 0));
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response.body(Body::from(out[body_start..].to_vec())).unwrap()
}

/// A `git` first on PATH that appends each call's argv and environment to a log,
/// then runs the real git; for proving what reached git and what did not.
pub fn logging_git(dir: &Path) -> (PathBuf, PathBuf) {
    let real = std::process::Command::new("sh").args(["-c", "command -v git"]).output().expect("sh runs");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    assert!(!real.is_empty(), "git is not on PATH");
    let bin = dir.join("logging-bin");
    let log = dir.join("git-calls.log");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\n{{ printf 'argv:'; printf ' %s' \"$@\"; printf '\\n'; env; echo; }} >> '{log}'\nexec '{real}' \"$@\"\n",
        log = log.display()
    );
    let wrapper = bin.join("git");
    std::fs::write(&wrapper, script).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&wrapper).status().unwrap();
    (bin, log)
}
