use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::Config;

/// The complete environment opencode runs with. It starts empty, so the bot's own
/// secrets (forge tokens, webhook secrets) never reach the agent; only the
/// variables the operator lists in `opencode.env` are passed through.
#[derive(Clone)]
pub struct OpencodeEnv {
    vars: Vec<(String, OsString)>,
}

impl std::fmt::Debug for OpencodeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OpencodeEnv").field("names", &names).finish()
    }
}

impl OpencodeEnv {
    pub fn new(config: &Config) -> Self {
        let root = config.state_dir.join("opencode");
        let settings = &config.opencode;
        let package_dir = settings.package_dir.clone().unwrap_or_else(|| root.join("config"));
        let mut vars: Vec<(String, OsString)> = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())),
            ("HOME".into(), root.join("home").into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("XDG_DATA_HOME".into(), root.join("data").into()),
            ("XDG_STATE_HOME".into(), root.join("state").into()),
            ("XDG_CACHE_HOME".into(), root.join("cache").into()),
            ("XDG_CONFIG_HOME".into(), package_dir.into()),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into()),
            ("OPENCODE_DISABLE_SHARE".into(), "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "1".into()),
            ("GIT_AUTHOR_NAME".into(), config.git.user_name.clone().into()),
            ("GIT_AUTHOR_EMAIL".into(), config.git.user_email.clone().into()),
            ("GIT_COMMITTER_NAME".into(), config.git.user_name.clone().into()),
            ("GIT_COMMITTER_EMAIL".into(), config.git.user_email.clone().into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ];
        // A repository's own opencode.json could add plugins or loosen permissions.
        // One server serves every repository, so the switch can only be off when
        // the operator trusts some repository's config.
        if settings.trusted_repos.is_empty() {
            vars.push(("OPENCODE_DISABLE_PROJECT_CONFIG".into(), "1".into()));
        }
        if let Some(file) = &settings.config {
            vars.push(("OPENCODE_CONFIG".into(), file.clone().into()));
        }
        for name in &settings.env {
            if let Some(value) = std::env::var_os(name) {
                vars.push((name.clone(), value));
            }
        }
        Self { vars }
    }

    pub fn vars(&self) -> impl Iterator<Item = (&str, &OsString)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Directories opencode expects to exist.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.vars.iter().filter(|(k, _)| k.starts_with("XDG_") || k == "HOME").map(|(_, v)| PathBuf::from(v)).collect()
    }

    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        cmd.env_clear();
        for dir in self.dirs() {
            let _ = std::fs::create_dir_all(dir);
        }
        cmd.envs(self.vars());
    }
}
