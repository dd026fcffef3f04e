//! Containment: the agent, steered by whoever wrote the issue, attacks kugetsu
//! from inside its sandbox. Every attack has a positive control, the same kind of
//! command aimed at what the agent may touch, so each test can fail.

mod support;

use std::path::{Path, PathBuf};

use kugetsu::engine::{Mode, RunOptions};
use kugetsu::issue_ref::IssueRef;
use support::{EnvOptions, Step, TestEnv};

/// Where the agent sees its checkout of acme/widget, whatever the issue.
const INSIDE: &str = "/workspace/widget";

fn issue(n: u64) -> IssueRef {
    format!("local/acme/widget#{n}").parse().unwrap()
}

fn checkout(env: &TestEnv, n: u64) -> PathBuf {
    env.state_dir().join(format!("worktrees/local/acme/widget/{n}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The agent's bash command for `script`, hidden in octal escapes, as an
/// attacker would hide it: opencode's own check of the paths a command names
/// must not be what stops it.
fn hidden(script: &str) -> String {
    let escaped: String = script.bytes().map(|b| format!("\\{b:03o}")).collect();
    format!("printf '{escaped}' | sh")
}

/// Runs `script` as the agent's one bash command in issue `n`'s session. The
/// script is hidden in octal escapes, as an attacker would hide it: opencode's
/// own check of the paths a command names must not be what stops it.
async fn agent_runs(env: &TestEnv, engine: &kugetsu::engine::Engine, n: u64, script: String) {
    let marker = format!("MARK-ATTACK-{n}");
    env.model.on(&marker, vec![Step::Bash(hidden(&script)), Step::Answer("attacked".into())]);
    let result = engine.run(&issue(n), &marker, Mode::Auto, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "attacked");
    // What the bash tool answered, for when an assertion below fails.
    if let Some(last) = env.model.requests_for(&marker).last() {
        eprintln!("{}", support::transcript(last));
    }
}

#[tokio::test]
async fn the_agent_reaches_neither_the_database_nor_other_issues_nor_the_mirror() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    agent_runs(&env, &engine, 1, "echo issue-one-private > private.txt".into()).await;
    let state = env.state_dir();
    let (one, two) = (checkout(&env, 1), checkout(&env, 2));
    let mirror = state.join("mirrors/local/acme/widget.git");
    let mirror_config = read(&mirror.join("config"));
    let script = format!(
        "echo issue-two > own.txt; cat own.txt > control-read.out; \
         head -c 16 {db} > db.out 2>&1; \
         cat {one}/private.txt > other-read.out 2>&1; \
         echo hijacked > {one}/hijacked.txt 2> other-write.err; \
         cat {mirror}/config > mirror-config.out 2>&1; \
         git config --file {mirror}/config credential.helper '!touch {state}/helper-ran' 2> mirror-write.err; \
         ls {state} > state.out 2>&1; ls {state}/opencode/homes/local/acme/widget > homes.out 2>&1",
        db = state.join("kugetsu.db").display(),
        one = one.display(),
        mirror = mirror.display(),
        state = state.display(),
    );
    agent_runs(&env, &engine, 2, script).await;

    assert_eq!(read(&two.join("control-read.out")).trim(), "issue-two", "control: the agent reads its own copy");
    assert!(state.join("kugetsu.db").exists());
    assert!(!read(&two.join("db.out")).contains("SQLite format"), "the database is out of reach");
    assert!(!read(&two.join("other-read.out")).contains("issue-one-private"), "another issue is out of reach");
    assert!(!one.join("hijacked.txt").exists(), "another issue's copy cannot be written");
    assert!(!read(&two.join("mirror-config.out")).contains("[remote"), "the mirror's config is out of reach");
    assert_eq!(read(&mirror.join("config")), mirror_config, "the mirror's config is untouched");
    assert!(!state.join("helper-ran").exists());
    let listed = read(&two.join("state.out"));
    assert!(!listed.contains("kugetsu.db") && !listed.contains("locks"), "the state dir shows nothing: {listed}");
    let homes = read(&two.join("homes.out"));
    assert!(!homes.contains('1'), "other issues' opencode homes are hidden: {homes}");
    engine.shutdown().await;
}

#[tokio::test]
async fn the_agent_cannot_find_the_server_password_or_see_kugetsu() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let kugetsu_pid = std::process::id();
    let script = format!(
        "env > env.out; ls /proc > procs.out; \
         cat /proc/{kugetsu_pid}/environ > kugetsu-env.out 2>&1; \
         cat /proc/self/environ | tr '\\0' '\\n' > self-env.out; \
         for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null > every-env.out; \
         grep CapEff /proc/self/status > caps.out; \
         unshare -U true 2> userns.err; echo $? > userns.rc"
    );
    agent_runs(&env, &engine, 3, script).await;
    let dir = checkout(&env, 3);
    let env_out = read(&dir.join("env.out"));
    assert!(env_out.contains("GIT_AUTHOR_NAME="), "control: the agent's environment was written: {env_out}");
    assert!(!env_out.contains("OPENCODE_SERVER_PASSWORD"), "the password is not in the agent's environment");
    assert!(read(&dir.join("self-env.out")).contains("GIT_AUTHOR_NAME="), "control: /proc is readable");
    assert!(!read(&dir.join("self-env.out")).contains("OPENCODE_SERVER_PASSWORD"));
    // The server's own environment holds the password (seen from outside, as
    // root), and no process in the jail can read it.
    let home = env.state_dir().join("opencode/homes/local/acme/widget/3");
    assert!(server_environ(&home).contains("OPENCODE_SERVER_PASSWORD="), "control: the password is there to find");
    let every = read(&dir.join("every-env.out"));
    assert!(every.contains("GIT_AUTHOR_NAME="), "control: the agent's own processes' environments were read");
    assert!(!every.contains("OPENCODE_SERVER_PASSWORD"), "no process in the jail shows the password: {every}");
    assert_eq!(read(&dir.join("caps.out")).trim(), "CapEff:\t0000000000000000", "nothing in the jail has a capability");
    let control = std::process::Command::new("unshare").args(["-U", "true"]).status().unwrap();
    assert!(control.success(), "control: outside a jail, unshare makes a user namespace");
    assert_ne!(
        read(&dir.join("userns.rc")).trim(),
        "0",
        "no new user namespace inside: {}",
        read(&dir.join("userns.err"))
    );
    let pids: Vec<u32> = read(&dir.join("procs.out")).lines().filter_map(|l| l.parse().ok()).collect();
    assert!(!pids.is_empty(), "control: the agent sees its own processes");
    assert!(pids.iter().all(|&pid| pid < 100), "only the sandbox's own few processes are visible: {pids:?}");
    assert!(!read(&dir.join("kugetsu-env.out")).contains("PATH="), "kugetsu's environment is out of reach");
    engine.shutdown().await;
}

/// The environment of the `opencode serve` whose data lives in `home`, read from outside its jail.
fn server_environ(home: &Path) -> String {
    let marker = format!("XDG_DATA_HOME={}", home.join("data").display());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let text = String::from_utf8_lossy(&environ).replace('\0', "\n");
        let is_server = std::fs::read_to_string(entry.path().join("cmdline")).is_ok_and(|c| c.contains("serve"));
        if is_server && text.lines().any(|l| l == marker) {
            return text;
        }
    }
    String::new()
}

#[tokio::test]
async fn config_and_filters_planted_in_the_working_copy_run_only_inside_the_sandbox() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let state = env.state_dir();
    let dir = checkout(&env, 4);
    // kugetsu's own `git add` of the leftovers runs the planted clean filter.
    let script = format!(
        "git config filter.evil.clean 'touch {INSIDE}/filter-ran; touch {state}/filter-escaped; cat' && \
         echo '* filter=evil' > .gitattributes && echo leftover > leftover.txt",
        state = state.display(),
    );
    agent_runs(&env, &engine, 4, script).await;
    assert!(dir.join("filter-ran").exists(), "control: kugetsu's git ran the planted filter");
    assert!(!state.join("filter-escaped").exists(), "but only inside the sandbox");
    assert!(env.remote_files("kugetsu/4").contains(&"leftover.txt".to_owned()), "the work was still pushed");
    engine.shutdown().await;
}

/// A process that outlives its group's leader: the main thread exits alone, so
/// `/proc` shows the process as a zombie while its other thread goes on.
const HEADLESS_THREAD: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
static void *later(void *arg) { sleep(6); fclose(fopen("zombie-late", "w")); return arg; }
int main(void) {
    setsid();
    pthread_t t;
    pthread_create(&t, 0, later, 0);
    fclose(fopen("zombie.started", "w"));
    syscall(SYS_exit, 0);
}
"#;

/// A chain of processes that each start the next and exit, so no pid lives long.
const HOPPER: &str = "c=$(cat hops 2>/dev/null || echo 0); echo $((c + 1)) > hops; sleep 0.05; \
                      if [ $c -gt 120 ]; then touch hop-late; else sh hop.sh & fi";

#[tokio::test]
async fn what_the_agent_leaves_running_ends_with_its_run() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let dir = checkout(&env, 7);
    // Each waits to act while kugetsu commits and pushes, or later: a background
    // job, a daemon in a session of its own, a process whose leader thread is
    // gone, and a chain that hops from pid to pid.
    let script = format!(
        "cat > headless.c <<'EOF'\n{HEADLESS_THREAD}\nEOF\n\
         cc -o headless headless.c -lpthread && (./headless >/dev/null 2>&1 </dev/null &); \
         nohup sh -c 'echo $$ > job.pid; sleep 6; touch job-late' >/dev/null 2>&1 & \
         setsid sh -c 'echo $$ > daemon.pid; sleep 6; touch daemon-late' >/dev/null 2>&1 < /dev/null & \
         echo '{HOPPER}' > hop.sh; sh hop.sh >/dev/null 2>&1 </dev/null; \
         sleep 1"
    );
    agent_runs(&env, &engine, 7, script).await;
    let home = env.state_dir().join("opencode/homes/local/acme/widget/7");
    let server = server_pid(&home).expect("the issue's server runs");
    for started in ["job.pid", "daemon.pid", "zombie.started", "hops"] {
        assert!(dir.join(started).exists(), "control: {started} shows it was running");
    }
    let hops = read(&dir.join("hops"));
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    for late in ["job-late", "daemon-late", "zombie-late", "hop-late"] {
        assert!(!dir.join(late).exists(), "{late}: it ended with the run");
    }
    assert_eq!(read(&dir.join("hops")), hops, "the chain stopped hopping");
    assert_eq!(server_pid(&home), Some(server), "the server itself stays warm for the next turn");
    engine.shutdown().await;
}

/// The host pid of the `opencode serve` whose data lives in `home`: PID 1 of its jail.
fn server_pid(home: &Path) -> Option<u32> {
    let marker = format!("XDG_DATA_HOME={}", home.join("data").display());
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = String::from_utf8_lossy(&std::fs::read(entry.path().join("environ")).ok()?).replace('\0', "\n");
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        let jail_init =
            status.lines().any(|l| l.starts_with("NSpid:") && l.split_whitespace().count() > 2 && l.ends_with("\t1"));
        (jail_init && environ.lines().any(|l| l == marker)).then_some(pid)
    })
}

#[tokio::test]
async fn opencodes_grep_runs_kugetsus_ripgrep_not_one_the_agent_planted() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let dir = checkout(&env, 10);
    // opencode runs the first `rg` it finds, with its whole environment, and
    // looks in its data directory (the agent's to write) when PATH has none.
    let script = format!(
        "mkdir -p $XDG_DATA_HOME/opencode/bin && \
         printf '#!/bin/sh\\nenv > {INSIDE}/planted-ran\\n' > $XDG_DATA_HOME/opencode/bin/rg && \
         chmod +x $XDG_DATA_HOME/opencode/bin/rg; \
         command -v rg > which-rg.out; echo 'needle-in-go' > main.go"
    );
    env.model.on(
        "MARK-HELPERS",
        vec![
            Step::Bash(hidden(&script)),
            Step::Tool("grep", serde_json::json!({ "pattern": "needle-in-go" })),
            Step::Answer("looked".into()),
        ],
    );
    let result = engine.run(&issue(10), "MARK-HELPERS", Mode::Auto, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "looked");
    let requests = env.model.requests_for("MARK-HELPERS");
    let last = support::transcript(requests.last().expect("the model was asked"));
    assert!(last.contains("main.go"), "control: the grep tool found the file: {last}");
    let found = read(&dir.join("which-rg.out"));
    assert!(found.trim().ends_with("opencode/bin/rg"), "the first rg is kugetsu's: {found}");
    assert!(!dir.join("planted-ran").exists(), "the planted ripgrep never ran");
    engine.shutdown().await;
}

#[tokio::test]
async fn what_the_agent_plants_in_its_opencode_home_never_reaches_opencode() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let dir = checkout(&env, 11);
    // opencode runs git itself when it starts, with its whole environment; git's
    // trace2 would write the variables it names wherever the config says.
    let script = format!(
        "printf '[trace2]\\n\\teventTarget = {INSIDE}/trace.json\\n\\tenvVars = OPENCODE_SERVER_PASSWORD\\n' > $HOME/.gitconfig; \
         GIT_CONFIG_GLOBAL=$HOME/.gitconfig OPENCODE_SERVER_PASSWORD=control-value git rev-parse HEAD >/dev/null; \
         mv trace.json control-trace.json; \
         mkdir -p $XDG_CACHE_HOME/opencode && echo '{{}}' > $XDG_CACHE_HOME/opencode/models.json"
    );
    agent_runs(&env, &engine, 11, script).await;
    assert!(read(&dir.join("control-trace.json")).contains("control-value"), "control: the planted config is live");
    let home = env.state_dir().join("opencode/homes/local/acme/widget/11");
    let models = home.join("cache/opencode/models.json");
    assert!(models.exists(), "control: the agent wrote opencode's cache");
    // The next turn starts a new server, whose git would read the planted config.
    assert!(env.kill_opencode() > 0, "control: the issue's server was running");
    agent_runs(&env, &engine, 11, "true".into()).await;
    let trace = std::fs::read_to_string(dir.join("trace.json")).unwrap_or_default();
    assert!(!trace.contains("OPENCODE_SERVER_PASSWORD"), "opencode's git never read it: {trace}");
    assert!(!models.exists(), "a new server starts with an empty cache");
    engine.shutdown().await;
}

#[tokio::test]
async fn malformed_objects_the_agent_writes_never_reach_the_mirror_or_the_remote() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    // A commit git's own fsck calls broken (badDate), written past git's checks.
    let commit_with_date = |date: &str| {
        format!(
            "t=$(git write-tree); p=$(git rev-parse HEAD); \
             c=$(printf 'tree %s\\nparent %s\\nauthor a <a@x> {date} +0000\\ncommitter a <a@x> 0 +0000\\n\\nmade by hand\\n' $t $p \
                 | git hash-object -t commit -w --literally --stdin); \
             git update-ref HEAD $c && echo $c > made.sha"
        )
    };
    for (n, date) in [(8, "nottime"), (9, "0")] {
        env.model.on(
            &format!("MARK-OBJECT-{n}"),
            vec![Step::Bash(hidden(&commit_with_date(date))), Step::Answer("made".into())],
        );
    }
    let control = engine.run(&issue(9), "MARK-OBJECT-9", Mode::Auto, RunOptions::default()).await;
    assert!(control.is_ok(), "control: a hand-made, well-formed commit is taken: {control:?}");
    assert!(env.remote_files("kugetsu/9").contains(&"made.sha".to_owned()));

    let attack = engine.run(&issue(8), "MARK-OBJECT-8", Mode::Auto, RunOptions::default()).await;
    let refusal = attack.expect_err("the broken commit is refused").to_string();
    assert!(refusal.contains("git's checks refuse"), "said in kugetsu's words: {refusal}");
    let bad = read(&checkout(&env, 8).join("made.sha"));
    let mirror = env.state_dir().join("mirrors/local/acme/widget.git");
    let in_mirror = std::process::Command::new("git")
        .args(["--git-dir", &mirror.to_string_lossy(), "cat-file", "-e", bad.trim()])
        .status()
        .unwrap();
    assert!(!in_mirror.success(), "the mirror does not hold it");
    assert!(!env.remote_has_branch("kugetsu/8"), "nothing was pushed");
    engine.shutdown().await;
}

#[tokio::test]
async fn without_a_sandbox_the_same_attack_reaches_the_database() {
    // sandbox = "none" is the operator's explicit choice; this is what it costs.
    let env = TestEnv::with(EnvOptions::default()).await;
    let text = read(&env.config_path).replacen("state_dir = \"state\"", "state_dir = \"state\"\nsandbox = \"none\"", 1);
    std::fs::write(&env.config_path, text).unwrap();
    let engine = env.engine().await;
    let db = env.state_dir().join("kugetsu.db");
    agent_runs(&env, &engine, 5, format!("head -c 16 {} > db.out", db.display())).await;
    assert!(read(&checkout(&env, 5).join("db.out")).contains("SQLite format"), "unconfined, the agent reads it");
    engine.shutdown().await;
}

// Multi-threaded: the test blocks on the CLI while the fake model answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_sandbox_refuses_to_run_agents_and_says_how_to_fix_it() {
    let env = TestEnv::new("server").await;
    let fake = env.dir.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let bwrap = fake.join("bwrap");
    // What bubblewrap prints where a container's seccomp profile forbids namespaces.
    std::fs::write(&bwrap, "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&bwrap, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let out = env.kugetsu().env("PATH", &path).args(["start", "local/acme/widget#6", "MARK-CONTROL"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("No permissions to create new namespace"), "{stderr}");
    assert!(stderr.contains("sandbox = \"none\""), "it names the way out: {stderr}");
    assert!(env.model.requests().is_empty(), "no agent ran");
    // Control: with the real bubblewrap the same command runs.
    env.model.on("MARK-CONTROL", vec![Step::Answer("ran".into())]);
    let out = env.kugetsu().args(["start", "local/acme/widget#6", "MARK-CONTROL"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
