//! The compose deployment's scripts, as far as they run here: shellcheck on
//! every shell script, the demo repository's set-up against the fake Gitea, and
//! the kugetsu container's start (secrets, webhook, serve). Gitea's own command
//! (`gitea admin …` in deploy/bootstrap/gitea.sh) cannot run here.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::FakeForge;
use support::fake_forge::BOT_LOGIN;
use tokio::io::AsyncBufReadExt;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shellcheck(path: &Path) -> std::process::Output {
    std::process::Command::new("shellcheck")
        .arg(path)
        .output()
        .expect("shellcheck is not installed: `scripts/test` installs it (apt-get install shellcheck)")
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let mut scripts: Vec<PathBuf> = vec![root().join(".ci/run"), root().join("deploy/start.sh")];
    for dir in ["scripts", "deploy/bootstrap"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            scripts.push(entry.unwrap().path());
        }
    }
    assert!(scripts.len() >= 8, "{scripts:?}");
    for script in &scripts {
        let out = shellcheck(script);
        assert!(out.status.success(), "{}:\n{}", script.display(), String::from_utf8_lossy(&out.stdout));
    }
    // Positive control: what shellcheck is for, it finds.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/bin/sh\nrm -rf $1/*\n").unwrap();
    let out = shellcheck(&bad);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SC2086"));
}

fn gitea_url(forge: &FakeForge) -> String {
    forge.gitea_api().trim_end_matches("/api/v1").to_owned()
}

async fn demo(forge: &FakeForge, token: &str) -> (i32, String) {
    let out = tokio::process::Command::new(root().join("deploy/bootstrap/demo.sh"))
        .args(["kugetsu-admin", "demo", BOT_LOGIN])
        .env("GITEA_URL", gitea_url(forge))
        .env("GITEA_TOKEN", token)
        .output()
        .await
        .expect("demo.sh runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_repository_is_made_once_with_the_bot_as_its_admin() {
    let forge = FakeForge::start().await;
    forge.accept_token("admin-token", "kugetsu-admin");
    let (code, out) = demo(&forge, "not-a-token").await;
    assert_eq!(code, 1, "a refused token fails the bootstrap: {out}");
    assert!(!forge.has_repo("kugetsu-admin/demo"));

    let (code, out) = demo(&forge, "admin-token").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created kugetsu-admin/demo"), "{out}");
    assert!(forge.has_repo("kugetsu-admin/demo"));
    assert_eq!(forge.permission_of(BOT_LOGIN).as_deref(), Some("admin"));
    // Again, as after a half-finished first start.
    let (code, out) = demo(&forge, "admin-token").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("exists already"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_start_reads_the_secrets_installs_the_webhook_and_serves() {
    let forge = FakeForge::start().await;
    forge.add_repo("acme/widget");
    forge.accept_token("bot-token-canary", BOT_LOGIN);
    forge.set_permission(BOT_LOGIN, "admin");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("kugetsu.env");
    std::fs::write(
        &secrets,
        // As deploy/bootstrap/gitea.sh writes it: every value quoted.
        "KUGETSU_GITEA_TOKEN='bot-token-canary'\nKUGETSU_GITEA_WEBHOOK_SECRET='secret-canary'\n\
         KUGETSU_DEMO_REPO='gitea/acme/widget'\nKUGETSU_STATUS_PASSWORD='status-canary'\n",
    )
    .unwrap();
    let config = dir.path().join("kugetsu.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[opencode]\nbinary = \"{opencode}\"\n\
             [bot]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://kugetsu.test:8080\"\nreconcile_interval = \"0s\"\n\
             status_listen = \"127.0.0.1:0\"\nstatus_password_env = \"KUGETSU_STATUS_PASSWORD\"\n\
             [instances.gitea]\nkind = \"gitea\"\napi_url = \"{api}\"\ngit_url = \"{git}\"\n\
             token_env = \"KUGETSU_GITEA_TOKEN\"\nwebhook_secret_env = \"KUGETSU_GITEA_WEBHOOK_SECRET\"\n",
            opencode = support::opencode_bin().display(),
            api = forge.gitea_api(),
            git = gitea_url(&forge),
        ),
    )
    .unwrap();
    let mut start = tokio::process::Command::new(root().join("deploy/start.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SECRETS", &secrets)
        .env("KUGETSU", env!("CARGO_BIN_EXE_kugetsu"))
        .env("KUGETSU_CONFIG", &config)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start.sh runs");
    let mut log = tokio::io::BufReader::new(start.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = log.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("kugetsu is listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "kugetsu serve never listened:\n{seen}");
    let hooks = forge.hooks("repos/acme/widget");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].url, "http://kugetsu.test:8080/webhooks/gitea");
    assert_eq!(hooks[0].secret, "secret-canary", "the bootstrap's secret signs the deliveries");
    assert!(!seen.contains("bot-token-canary") && !seen.contains("secret-canary"), "no secret in the log:\n{seen}");
    let _ = start.kill().await;
}

/// A replica's start (docker-compose.replicas.yml): the database URL is made
/// from the bootstrap's password and the compose's host, and `kugetsu serve`
/// keeps its state in PostgreSQL (a throwaway cluster here); without the
/// password it says what to do and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_start_serves_from_postgresql() {
    let url = support::postgres::cluster().new_database().await;
    let (port, name) = {
        let rest = url.rsplit('@').next().expect("host part");
        let (host, name) = rest.split_once('/').expect("a database");
        (host.rsplit(':').next().expect("a port").to_owned(), name.to_owned())
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kugetsu.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\ndatabase_url_env = \"KUGETSU_DATABASE_URL\"\n[opencode]\nbinary = \"{opencode}\"\n\
             [bot]\nlisten = \"127.0.0.1:0\"\nreconcile_interval = \"0s\"\n\
             [instances.gitea]\nkind = \"gitea\"\napi_url = \"http://127.0.0.1:9/api/v1\"\ngit_url = \"http://127.0.0.1:9\"\n\
             webhook_secret_env = \"KUGETSU_GITEA_WEBHOOK_SECRET\"\n",
            opencode = support::opencode_bin().display(),
        ),
    )
    .unwrap();
    let start = |secrets: &str| {
        let file = dir.path().join("kugetsu.env");
        std::fs::write(&file, secrets).unwrap();
        tokio::process::Command::new(root().join("deploy/start.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SECRETS", &file)
            .env("KUGETSU", env!("CARGO_BIN_EXE_kugetsu"))
            .env("KUGETSU_CONFIG", &config)
            .env("KUGETSU_DATABASE_HOST", "127.0.0.1")
            .env("KUGETSU_DATABASE_PORT", &port)
            .env("KUGETSU_DATABASE_NAME", &name)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start.sh runs")
    };
    // Secrets from before replicas were set up: no password.
    let out = start("KUGETSU_GITEA_WEBHOOK_SECRET='s'\n").wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("no database password"), "{said}");

    let mut serve = start("KUGETSU_GITEA_WEBHOOK_SECRET='s'\nKUGETSU_DATABASE_PASSWORD='db-password-canary'\n");
    let mut log = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = log.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("kugetsu is listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "kugetsu serve never listened:\n{seen}");
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.expect("the database");
    let replicas: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas").fetch_all(&mut db).await.unwrap();
    let id = std::fs::read_to_string(dir.path().join("state/replica-id")).expect("the replica's id");
    assert_eq!(replicas, vec![id.trim().to_owned()], "the replica keeps its state in PostgreSQL");
    assert!(!seen.contains("db-password-canary"), "no password in the log:\n{seen}");
    let _ = serve.kill().await;
}
