//! `kugetsu doctor` against the fake forge: a healthy deployment passes, and
//! each thing a first deployment gets wrong fails with how to fix it.

mod support;

use std::path::{Path, PathBuf};

use support::FakeForge;
use support::fake_forge::BOT_LOGIN;

const TOKEN: &str = "doctor-test-token";

struct Setup<'a> {
    opencode: &'a Path,
    tea_token_var: &'a str,
}

fn write_config(dir: &Path, forge: &FakeForge, setup: &Setup<'_>) -> PathBuf {
    let text = format!(
        "state_dir = \"state\"\n\n[opencode]\nbinary = \"{opencode}\"\n\n\
         [bot]\npublic_url = \"https://kugetsu.example.com\"\n\n\
         [pool]\nrepos = [\"gh/acme/widget\", \"tea/acme/widget\"]\n\n\
         [instances.gh]\nkind = \"github\"\napi_url = \"{gh}\"\ngit_url = \"https://github.example.com\"\n\
         token_env = \"DOCTOR_TOKEN\"\nwebhook_secret_env = \"DOCTOR_SECRET\"\n\n\
         [instances.tea]\nkind = \"gitea\"\napi_url = \"{tea}\"\ngit_url = \"https://gitea.example.com\"\n\
         token_env = \"{tea_var}\"\nwebhook_secret_env = \"DOCTOR_SECRET\"\n",
        opencode = setup.opencode.display(),
        gh = forge.github_api(),
        tea = forge.gitea_api(),
        tea_var = setup.tea_token_var,
    );
    let path = dir.join("kugetsu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn kugetsu(config: &Path, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kugetsu"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        // opencode is a Node script: it needs PATH to find node.
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("kugetsu runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn forge() -> FakeForge {
    let forge = FakeForge::start().await;
    forge.add_repo("acme/widget");
    forge.add_org("acme");
    forge.accept_token(TOKEN, BOT_LOGIN);
    forge.set_permission(BOT_LOGIN, "admin");
    forge
}

fn fails(out: &str, what: &str, fix: &str) {
    let l = line(out, what);
    assert!(l.starts_with("FAIL") && l.contains(fix), "{what} should fail with `{fix}`: {l}");
}

fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(what)))
        .unwrap_or_else(|| panic!("no `{what}` line in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_deployment_passes_every_check() {
    let forge = forge().await;
    let dir = tempfile::tempdir().unwrap();
    let opencode = support::opencode_bin();
    let config = write_config(dir.path(), &forge, &Setup { opencode: &opencode, tea_token_var: "DOCTOR_TOKEN" });
    let vars = [("DOCTOR_TOKEN", TOKEN), ("DOCTOR_SECRET", "a-secret")];
    for repo in ["gh/acme/widget", "tea/acme/widget"] {
        let (code, _, err) = kugetsu(&config, &["hooks", "install", repo], &vars).await;
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = kugetsu(&config, &["doctor"], &vars).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("FAIL"), "{out}");
    for what in ["config", "gh variables", "tea variables", "opencode", "sandbox", "disk", "gh API", "tea API"] {
        assert!(line(&out, what).starts_with("ok"), "{what}: {out}");
    }
    assert!(line(&out, "opencode").contains("1.18.33"), "{out}");
    for repo in ["gh/acme/widget", "tea/acme/widget"] {
        assert!(line(&out, &format!("{repo} ")).starts_with("ok"), "{out}");
        assert!(line(&out, &format!("{repo} webhook")).starts_with("ok"), "{out}");
    }
    assert!(line(&out, "gh/acme/widget webhook deliveries").contains("none yet"), "{out}");
    assert!(line(&out, "tea/acme/widget webhook deliveries").contains("API does not report them"), "{out}");

    // GitHub reports what the hook sent: a failure, then a success after it.
    let hook = forge.hooks("repos/acme/widget").iter().find(|h| h.url.contains("/webhooks/gh")).map(|h| h.id).unwrap();
    forge.add_hook_delivery("repos/acme/widget", hook, 502);
    forge.add_hook_delivery("repos/acme/widget", hook, 202);
    let (code, out, _) = kugetsu(&config, &["doctor"], &vars).await;
    assert_eq!(code, 0, "{out}");
    let deliveries = line(&out, "gh/acme/widget webhook deliveries");
    assert!(deliveries.starts_with("warn") && deliveries.contains("1 of the last 2 failed"), "{out}");
    // The newest failed: kugetsu is not reached.
    forge.add_hook_delivery("repos/acme/widget", hook, 0);
    let (code, out, _) = kugetsu(&config, &["doctor"], &vars).await;
    assert_ne!(code, 0, "{out}");
    fails(&out, "gh/acme/widget webhook deliveries", "0 failed to connect → check that the forge reaches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mistake_fails_with_its_fix() {
    let forge = forge().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-opencode-here");
    let config = write_config(dir.path(), &forge, &Setup { opencode: &missing, tea_token_var: "DOCTOR_TEA_TOKEN" });
    // The webhook secret is not exported, and tea's token is wrong.
    let vars = [("DOCTOR_TOKEN", TOKEN), ("DOCTOR_TEA_TOKEN", "not-a-token")];
    let (code, out, err) = kugetsu(&config, &["doctor"], &vars).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("check(s) failed"), "{err}");
    fails(&out, "gh variables", "DOCTOR_SECRET not set");
    fails(&out, "opencode", "npm install -g opencode-ai@1.18.33");
    fails(&out, "tea API", "refused the token → check DOCTOR_TEA_TOKEN");
    // gh answers, but no hook delivers to kugetsu.
    assert!(line(&out, "gh API").starts_with("ok"), "{out}");
    assert!(line(&out, "gh/acme/widget ").starts_with("ok"), "{out}");
    fails(&out, "gh/acme/widget webhook", "kugetsu hooks install gh/acme/widget");

    // Write access is enough on GitHub; Gitea answers who may ask only to admins.
    forge.set_permission(BOT_LOGIN, "write");
    let vars = [("DOCTOR_TOKEN", TOKEN), ("DOCTOR_TEA_TOKEN", TOKEN), ("DOCTOR_SECRET", "s")];
    let (code, out, _) = kugetsu(&config, &["doctor"], &vars).await;
    assert_ne!(code, 0, "{out}");
    assert!(line(&out, "gh/acme/widget ").starts_with("ok"), "{out}");
    fails(&out, "tea/acme/widget ", "needs Admin");
    assert!(line(&out, "gh/acme/widget webhook").starts_with("warn"), "hooks unreadable without admin: {out}");
    // A config that does not load is a finding too.
    std::fs::write(&config, "state_dir = \"state\"\nnot_a_key = 1\n").unwrap();
    let (code, out, _) = kugetsu(&config, &["doctor"], &vars).await;
    assert_ne!(code, 0, "{out}");
    fails(&out, "config", "not_a_key");
}

/// With `database_url_env`, doctor connects to PostgreSQL (a throwaway
/// cluster), brings its schema up to date and says where it is, never with the
/// URL's password; a database that does not answer fails with what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_shared_database() {
    let forge = forge().await;
    let dir = tempfile::tempdir().unwrap();
    let opencode = support::opencode_bin();
    let config = write_config(dir.path(), &forge, &Setup { opencode: &opencode, tea_token_var: "DOCTOR_TOKEN" });
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("database_url_env = \"DOCTOR_DATABASE\"\n{text}")).unwrap();
    let url = support::postgres::cluster().new_database().await;
    let with_password = url.replacen("postgres://kugetsu@", "postgres://kugetsu:pw-canary-314@", 1);
    let vars = |db: &str| {
        [("DOCTOR_TOKEN", TOKEN), ("DOCTOR_SECRET", "s"), ("DOCTOR_DATABASE", db)].map(|(k, v)| (k, v.to_owned()))
    };
    let owned = vars(&with_password);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, out, err) = kugetsu(&config, &["doctor"], &env).await;
    let line =
        out.lines().find(|l| l.contains("database")).unwrap_or_else(|| panic!("no database line:\n{out}\n{err}"));
    assert!(line.starts_with("ok") && line.contains("PostgreSQL at 127.0.0.1:"), "{line}");
    assert!(!out.contains("pw-canary-314") && !err.contains("pw-canary-314"), "no password shown:\n{out}\n{err}");
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.expect("the database");
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_name IN ('jobs', 'leases')")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(tables, 2, "the schema is there");

    // Nothing listens on port 9.
    let owned = vars("postgres://kugetsu:pw-canary-314@127.0.0.1:9/kugetsu");
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, err) = kugetsu(&config, &["doctor"], &env).await;
    assert_ne!(code, 0, "{out}");
    let line = out.lines().find(|l| l.contains("database")).unwrap_or_else(|| panic!("no database line:\n{out}"));
    assert!(line.starts_with("FAIL") && line.contains("check database_url"), "{line}");
    assert!(!out.contains("pw-canary-314") && !err.contains("pw-canary-314"), "no password shown:\n{out}\n{err}");
}
