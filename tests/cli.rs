//! The `kugetsu` binary: exit codes, messages and JSON output.

mod support;

use support::{Step, TestEnv};

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("kugetsu runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_a_clear_message() {
    let env = TestEnv::new("server").await;
    let (code, _, err) = run(env.kugetsu().args(["start", "local/acme/..#1", "hi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("repository name"), "{err}");

    let (code, _, err) = run(env.kugetsu().args(["start", "nowhere/acme/widget#1", "hi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown instance `nowhere`") && err.contains("local"), "{err}");

    let (code, _, err) = run(env.kugetsu().args(["start", "local/acme/missing#1", "hi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("was not found"), "{err}");
    assert!(!env.state_dir().join("mirrors/local/acme/missing.git").exists(), "a failed clone leaves nothing");

    let (code, _, err) = run(env.kugetsu().args(["continue", "local/acme/widget#1", "hi"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("never started"), "{err}");

    let (code, _, err) = run(env.kugetsu().args(["destroy", "local/acme/widget#1"]).stdin(std::process::Stdio::null()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-y"), "{err}");

    let (code, _, err) =
        run(std::process::Command::new(env!("CARGO_BIN_EXE_kugetsu")).args(["--config", "/nonexistent.toml", "list"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read config file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_prints_json_and_list_shows_the_session() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-CLI", vec![Step::Answer("CLI ANSWER".into())]);
    let (code, out, err) = run(env.kugetsu().args(["start", "--json", "local/acme/widget#21", "MARK-CLI", "go"]));
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).expect("JSON result");
    assert_eq!(result["answer"], "CLI ANSWER");
    assert_eq!(result["branch"], "kugetsu/21");
    assert!(result["session_id"].as_str().is_some_and(|s| s.starts_with("ses_")));
    assert!(result["tokens"]["input"].as_u64().is_some() && result["duration"].as_str().is_some());

    let (code, out, _) = run(env.kugetsu().args(["list", "--json"]));
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["issue"], "local/acme/widget#21");
    assert_eq!(list[0]["session_id"], result["session_id"]);
    assert_eq!(list[0]["status"], "idle");

    let (code, out, _) = run(env.kugetsu().args(["list"]));
    assert_eq!(code, 0);
    assert!(out.contains("local/acme/widget#21") && out.contains("kugetsu/21"), "{out}");

    let (code, out, err) = run(env.kugetsu().args(["destroy", "-y", "local/acme/widget#21"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("destroyed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_failure_exits_3() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-FAIL", vec![Step::Error(500)]);
    let (code, out, err) = run(env.kugetsu().args(["start", "--json", "local/acme/widget#22", "MARK-FAIL"]));
    assert_eq!(code, 3, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).expect("JSON error");
    assert_eq!(body["error"]["kind"], "agent");
}

#[test]
fn the_example_and_deploy_configs_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        kugetsu::config::Config::load(&root.join("config/kugetsu.example.toml")).expect("example config loads");
    assert!(config.instances.len() >= 2);
    let deploy = kugetsu::config::Config::load(&root.join("deploy/kugetsu.toml")).expect("deploy config loads");
    let gitea = deploy.instance(&"gitea".parse().unwrap()).expect("the compose config serves gitea");
    assert_eq!(gitea.api_url, "http://gitea:3000/api/v1");
    // The replicas' config: the same, with the state in PostgreSQL (deploy/start.sh sets the URL).
    let text = std::fs::read_to_string(root.join("deploy/kugetsu-replicas.toml")).expect("the replicas' config");
    let url = "postgres://kugetsu:pw@postgres:5432/kugetsu";
    let env = |name: &str| (name == "KUGETSU_DATABASE_URL").then(|| url.to_owned());
    let replicas =
        kugetsu::config::Config::parse(&text, &root.join("deploy"), env).expect("the replicas' config loads");
    assert!(replicas.database_url.is_some(), "the replicas share PostgreSQL");
    assert_eq!(replicas.instances.len(), deploy.instances.len());
}

/// The keys the config structs accept in `section` (`""` for the top level), as
/// serde lists them when it refuses one it does not know.
fn accepted_keys(section: &str) -> Vec<String> {
    let unknown = "zz_not_a_key = 1\n";
    let text = match section {
        "" => format!("state_dir = \"s\"\n{unknown}"),
        "instances" => format!("state_dir = \"s\"\n[instances.x]\nkind = \"gitea\"\n{unknown}"),
        _ => format!("state_dir = \"s\"\n[{section}]\n{unknown}"),
    };
    let err = kugetsu::config::Config::parse(&text, std::path::Path::new("/"), |_| None).unwrap_err();
    let message = format!("{err:#}");
    let listed = message.split("expected one of").nth(1).unwrap_or_else(|| panic!("no key list in: {message}"));
    listed.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_readme_documents_every_config_key_and_no_other() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let reference = readme.split("## Configuration reference").nth(1).expect("a configuration reference");
    let reference = reference.split("\n## ").next().unwrap_or_default();
    let documented: std::collections::BTreeSet<String> = reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| row.split(" | ").next())
        .flat_map(|cell| format!("`{cell}").split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .filter(|key| !key.is_empty() && !key.contains(' '))
        .collect();
    let mut accepted = std::collections::BTreeSet::new();
    let top = accepted_keys("");
    for key in &top {
        match key.as_str() {
            "instances" => {
                accepted.extend(accepted_keys("instances").into_iter().map(|k| format!("instances.<name>.{k}")))
            }
            section if !accepted_keys_is_leaf(section) => {
                accepted.extend(accepted_keys(section).into_iter().map(|k| format!("{section}.{k}")));
            }
            leaf => {
                accepted.insert(leaf.to_owned());
            }
        }
    }
    assert!(accepted.len() > 40, "the structs' keys were not all found: {accepted:?}");
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(undocumented.is_empty() && unknown.is_empty(), "README lacks {undocumented:?}; README names {unknown:?}");
    // The example shows every key, set or commented out with its default.
    let example = std::fs::read_to_string(root.join("config/kugetsu.example.toml")).unwrap();
    let shown =
        |leaf: &str| example.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{leaf} =")));
    let missing: Vec<_> = accepted.iter().filter(|key| !shown(key.rsplit('.').next().unwrap_or(key))).collect();
    assert!(missing.is_empty(), "config/kugetsu.example.toml does not show {missing:?}");
}

/// Top-level keys that are values, not tables.
fn accepted_keys_is_leaf(key: &str) -> bool {
    ["state_dir", "sandbox", "database_url", "database_url_env"].contains(&key)
}
