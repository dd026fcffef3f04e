use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

/// What opencode does for a person at a terminal and a bot does not need.
/// - Snapshots are opencode's undo store, a second git index of the whole
///   checkout kept up around every tool call; kugetsu commits every run, so git
///   already is the record.
/// - Language servers and formatters are programs opencode starts itself, with
///   its whole environment (its server password, provider keys), and looks for
///   in its data directory, which the agent can write. The agent runs linters
///   and formatters through its shell, which has neither.
pub const HEADLESS_CONFIG: &str = r#"{"snapshot":false,"lsp":false,"formatter":false}"#;

/// Subdirectories of a checkout's opencode home, by variable.
const HOME_DIRS: &[(&str, &str)] =
    &[("HOME", "home"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")];

impl OpencodeEnv {
    pub fn new(config: &Config) -> Self {
        let settings = &config.opencode;
        let mut vars: Vec<(String, OsString)> = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())),
            ("LANG".into(), "C.UTF-8".into()),
            ("XDG_CONFIG_HOME".into(), config_dir(config).into()),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into()),
            ("OPENCODE_DISABLE_SHARE".into(), "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "1".into()),
            // Merged over the operator's config. See [`HEADLESS_CONFIG`].
            ("OPENCODE_CONFIG_CONTENT".into(), HEADLESS_CONFIG.into()),
            ("GIT_AUTHOR_NAME".into(), config.git.user_name.clone().into()),
            ("GIT_AUTHOR_EMAIL".into(), config.git.user_email.clone().into()),
            ("GIT_COMMITTER_NAME".into(), config.git.user_name.clone().into()),
            ("GIT_COMMITTER_EMAIL".into(), config.git.user_email.clone().into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            // opencode runs git itself, with its whole environment (its server's
            // password too), and HOME is the agent's to write: a planted
            // ~/.gitconfig (trace2, say) must not reach that git.
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ];
        // A repository's own opencode.json could add plugins or loosen permissions;
        // it is read only from repositories the operator trusts.
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

    /// HOME and the XDG data, state and cache directories inside `home`.
    pub fn home_vars(&self, home: &Path) -> Vec<(&'static str, PathBuf)> {
        HOME_DIRS.iter().map(|(var, sub)| (*var, home.join(sub))).collect()
    }

    pub fn home_dirs(&self, home: &Path) -> Vec<PathBuf> {
        self.home_vars(home).into_iter().map(|(_, dir)| dir).collect()
    }
}

/// opencode's global config directory (`XDG_CONFIG_HOME`), shared read-only by
/// every checkout.
pub fn config_dir(config: &Config) -> PathBuf {
    config.opencode.package_dir.clone().unwrap_or_else(|| config.state_dir.join("opencode").join("config"))
}
