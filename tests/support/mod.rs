//! Shared test harness: a scripted model, real opencode, real git with bare
//! remotes on disk, and a kugetsu config pointing at all of them.

#![allow(dead_code, unused_imports)]

pub mod bot_env;
pub mod fake_checks;
pub mod fake_forge;
pub mod fake_hooks;
pub mod fake_model;
pub mod fake_pulls;
pub mod fake_reactions;
pub mod git_http;
pub mod postgres;
pub mod replicas;
pub mod serve;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kugetsu::config::Config;
use kugetsu::engine::Engine;
use tempfile::TempDir;

pub use fake_forge::FakeForge;
pub use fake_model::{FakeModel, Step, transcript};

/// The pinned opencode the test command installs. Tests fail, never skip, without it.
pub fn opencode_bin() -> PathBuf {
    let path = std::env::var_os("KUGETSU_TEST_OPENCODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/opencode/node_modules/.bin/opencode"));
    assert!(
        path.exists(),
        "opencode is missing at {}: run `scripts/test` (it installs opencode-ai@1.18.33), \
         or point KUGETSU_TEST_OPENCODE at an opencode binary",
        path.display()
    );
    path
}

/// Provider packages opencode installs on first use, shared by every test so they
/// download once per machine rather than once per test.
pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/opencode-packages")
}

/// Serves `app` on 127.0.0.1 at a free port, in the background; returns the port.
pub async fn serve_on_loopback(app: axum::Router, what: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind {what}: {e}"));
    let port = listener.local_addr().unwrap_or_else(|e| panic!("{what} address: {e}")).port();
    let what = what.to_owned();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap_or_else(|e| panic!("{what} server: {e}")) });
    port
}

/// Runs git synchronously; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `<root>/<owner>/<repo>.git`, a bare remote with one commit on `main`.
pub fn make_remote(root: &Path, owner: &str, repo: &str) -> PathBuf {
    let bare = root.join(owner).join(format!("{repo}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = root.join(format!(".seed-{owner}-{repo}"));
    git(root, &["clone", "-q", bare.to_str().unwrap(), seed.to_str().unwrap()]);
    std::fs::write(seed.join("README.md"), format!("# {repo}\n")).unwrap();
    git(&seed, &["add", "README.md"]);
    git(&seed, &["commit", "-q", "-m", "initial commit"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    std::fs::remove_dir_all(&seed).unwrap();
    bare
}

pub struct TestEnv {
    pub dir: TempDir,
    pub model: FakeModel,
    pub remotes: PathBuf,
    pub config_path: PathBuf,
}

pub struct EnvOptions {
    pub driver: &'static str,
    pub run_timeout: &'static str,
    pub opencode: Option<PathBuf>,
    /// Extra TOML appended to the config.
    pub extra: String,
    /// Ready checkouts per repository (`pool.size`). Off unless a test is about
    /// them: each is one more opencode server on a 2-core machine.
    pub pool: usize,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self { driver: "server", run_timeout: "90s", opencode: None, extra: String::new(), pool: 0 }
    }
}

impl TestEnv {
    pub async fn new(driver: &'static str) -> Self {
        Self::with(EnvOptions { driver, ..EnvOptions::default() }).await
    }

    pub async fn with(options: EnvOptions) -> Self {
        let opencode = options.opencode.clone().unwrap_or_else(opencode_bin);
        let dir = tempfile::tempdir().unwrap();
        let model = FakeModel::start().await;
        let remotes = dir.path().join("remotes");
        make_remote(&remotes, "acme", "widget");
        let opencode_config = serde_json::json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": { "mock": {
                "npm": "@ai-sdk/openai-compatible",
                "options": { "baseURL": model.base_url(), "apiKey": "fake-key" },
                "models": { "mock-model": { "name": "Mock", "attachment": true,
                    "modalities": { "input": ["text", "image"], "output": ["text"] } } }
            }},
            "model": "mock/mock-model",
            "small_model": "mock/mock-model",
            "permission": { "bash": "allow", "edit": "allow", "webfetch": "deny" },
            "autoupdate": false,
            "share": "disabled"
        });
        std::fs::write(dir.path().join("opencode.json"), opencode_config.to_string()).unwrap();
        let config = format!(
            r#"state_dir = "state"

[opencode]
binary = "{opencode}"
driver = "{driver}"
config = "opencode.json"
package_dir = "{packages}"
max_model_retries = 1

[limits]
run_timeout = "{timeout}"
concurrency = 2

[pool]
size = {pool}

[instances.local]
kind = "gitea"
api_url = "http://127.0.0.1:9/api/v1"
git_url = "{remotes}"
webhook_secret_env = "LOCAL_WEBHOOK_SECRET"
{extra}
"#,
            opencode = opencode.display(),
            driver = options.driver,
            packages = package_dir().display(),
            timeout = options.run_timeout,
            pool = options.pool,
            remotes = remotes.display(),
            extra = options.extra,
        );
        let config_path = dir.path().join("kugetsu.toml");
        std::fs::write(&config_path, config).unwrap();
        let env = Self { dir, model, remotes, config_path };
        warm_packages(&opencode);
        env
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).expect("test config loads")
    }

    /// The config with secrets taken from `vars` instead of the process environment.
    pub fn config_with_env(&self, vars: &[(&str, &str)]) -> Config {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
        Config::parse(&text, self.dir.path(), lookup).expect("test config parses")
    }

    pub async fn engine(&self) -> Engine {
        Engine::open(self.config()).await.expect("engine opens")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn remote(&self) -> PathBuf {
        self.remotes.join("acme/widget.git")
    }

    /// The files at the tip of a branch in the bare remote.
    pub fn remote_files(&self, branch: &str) -> Vec<String> {
        git(&self.remote(), &["ls-tree", "--name-only", "-r", branch]).lines().map(str::to_owned).collect()
    }

    pub fn remote_has_branch(&self, branch: &str) -> bool {
        Command::new("git")
            .current_dir(self.remote())
            .args(["rev-parse", "-q", "--verify", &format!("refs/heads/{branch}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// The `kugetsu` binary with this environment's config.
    pub fn kugetsu(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kugetsu"));
        cmd.arg("--config").arg(&self.config_path);
        cmd
    }

    /// The opencode CLI with this state dir's opencode environment, for looking at
    /// (or tampering with) sessions behind kugetsu's back.
    pub fn opencode(&self, dir: &Path) -> Command {
        // Each checkout has its own opencode home, named like the checkout.
        let rel = dir.strip_prefix(self.state_dir().join("worktrees")).expect("a checkout kugetsu made");
        let root = self.state_dir().join("opencode/homes").join(rel);
        let mut cmd = Command::new(opencode_bin());
        cmd.current_dir(dir)
            .env("HOME", root.join("home"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_STATE_HOME", root.join("state"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env("XDG_CONFIG_HOME", package_dir())
            .env("OPENCODE_CONFIG", self.dir.path().join("opencode.json"))
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1");
        cmd
    }

    /// Session ids opencode has for the repository checked out at `dir`.
    pub fn opencode_sessions(&self, dir: &Path) -> Vec<String> {
        let out = self.opencode(dir).args(["session", "list", "--format", "json"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Vec::new();
        }
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("session list is JSON");
        list.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect()
    }

    /// Kills every opencode process that runs with this environment's state dir.
    pub fn kill_opencode(&self) -> usize {
        let marker = format!("XDG_DATA_HOME={}/", self.state_dir().join("opencode/homes").display());
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let matches = environ.split(|b| *b == 0).any(|var| var.starts_with(marker.as_bytes()));
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if matches && pid != std::process::id() as i32 {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                killed += 1;
            }
        }
        killed
    }
}

pub type SharedEngine = Arc<Engine>;

/// Makes sure opencode has installed its provider packages into the shared
/// package dir, under a lock, so parallel tests never install at once.
fn warm_packages(opencode: &Path) {
    let marker = package_dir().join("opencode/node_modules/@opencode-ai/plugin");
    std::fs::create_dir_all(package_dir()).unwrap();
    let lock = std::fs::File::create(package_dir().with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if marker.join("package.json").exists() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    git(scratch.path(), &["init", "-q"]);
    git(scratch.path(), &["commit", "-q", "--allow-empty", "-m", "init"]);
    let config = serde_json::json!({
        "provider": { "mock": {
            "npm": "@ai-sdk/openai-compatible",
            "options": { "baseURL": "http://127.0.0.1:9/v1", "apiKey": "x" },
            "models": { "mock-model": { "name": "Mock" } }
        }},
        "model": "mock/mock-model"
    });
    let config_path = scratch.path().join("opencode.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let data = scratch.path().join("data");
    // The model call fails (nothing listens on port 9); the install happens before it.
    let mut child = Command::new(opencode)
        .current_dir(scratch.path())
        .args(["run", "--title", "warm-up", "warm up"])
        .env("XDG_CONFIG_HOME", package_dir())
        .env("XDG_DATA_HOME", &data)
        .env("XDG_CACHE_HOME", scratch.path().join("cache"))
        .env("XDG_STATE_HOME", scratch.path().join("state"))
        .env("OPENCODE_CONFIG", &config_path)
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("opencode starts");
    // npm writes `.package-lock.json` last, once the package is fully in place.
    let lockfile = package_dir().join("opencode/node_modules/.package-lock.json");
    let installed = || {
        marker.join("package.json").exists()
            && std::fs::read_to_string(&lockfile).is_ok_and(|t| t.contains("@opencode-ai/plugin"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !installed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(marker.exists(), "opencode did not install its plugin package into {}", package_dir().display());
}
