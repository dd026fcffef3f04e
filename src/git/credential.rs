//! Push and fetch credentials, handed to one git process at a time.
//!
//! Git asks a credential helper that reads the answer from a socket kugetsu
//! passes to that git process as fd 3. The socket is the only copy git sees:
//! the token is never in argv, the environment, a URL or a config file. No
//! other process holds the socket, and a socket cannot be reopened through
//! `/proc/<pid>/fd` the way a pipe or file can, so the agent cannot ask the
//! helper for the token; in its worktree `git credential fill` finds no helper.

use std::fmt;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, BorrowedFd, IntoRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

/// The descriptor git and its children inherit the credential socket on.
const CREDENTIAL_FD: i32 = 3;

/// Answers `get` with what kugetsu wrote into the socket; `store` and `erase`
/// are no-ops because kugetsu, not git, owns the token.
const HELPER: &str = "!f() { if test \"$1\" = get; then cat <&3; fi; }; f";

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The credential socket of one git process; drop it once git has been spawned
/// so the parent keeps no copy.
#[derive(Debug)]
pub struct Handoff {
    _theirs: OwnedFd,
}

impl Credentials {
    /// Configures `cmd` (a `git` command before its subcommand) to get these
    /// credentials for `url`'s origin, and only for it. Remotes that are not
    /// HTTP(S) need none, and get none.
    pub fn hand_to(&self, cmd: &mut Command, url: &str) -> std::io::Result<Option<Handoff>> {
        let Some(origin) = http_origin(url) else { return Ok(None) };
        let answer = self.helper_answer()?;
        let (mut ours, theirs) = UnixStream::pair()?;
        // The answer stays buffered in the socket after our end closes; git reads it, then EOF.
        ours.write_all(answer.expose_secret().as_bytes())?;
        drop(ours);
        let theirs = OwnedFd::from(theirs);
        let raw = theirs.as_raw_fd();
        cmd.arg("-c").arg(format!("credential.{origin}.helper={HELPER}"));
        // SAFETY: runs between fork and exec and only calls dup2(2) and fcntl(2),
        // which are async-signal-safe; it allocates nothing and takes no locks.
        // `raw` stays open in the parent until `Handoff` is dropped after spawn.
        unsafe {
            cmd.pre_exec(move || {
                let source = BorrowedFd::borrow_raw(raw);
                // dup2 onto itself keeps close-on-exec, so clear it explicitly as well.
                // into_raw_fd: the duplicate must outlive this closure, into exec.
                let _ = nix::unistd::dup2_raw(source, CREDENTIAL_FD)?.into_raw_fd();
                fcntl(BorrowedFd::borrow_raw(CREDENTIAL_FD), FcntlArg::F_SETFD(FdFlag::empty()))?;
                Ok(())
            });
        }
        Ok(Some(Handoff { _theirs: theirs }))
    }

    /// The credential-helper protocol's answer; a line break in a value would let
    /// it smuggle in other attributes (a different host, say), so it is refused.
    fn helper_answer(&self) -> std::io::Result<SecretString> {
        let password = self.password.expose_secret();
        if [self.username.as_str(), password].iter().any(|v| v.contains(['\n', '\r', '\0'])) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the git username or token contains a line break or NUL",
            ));
        }
        Ok(SecretString::from(format!("username={}\npassword={password}\n", self.username)))
    }
}

/// `scheme://host[:port]` of an HTTP(S) URL.
fn http_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host_end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + host_end])
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    fn creds(password: &str) -> Credentials {
        Credentials { username: "bot".into(), password: SecretString::from(password) }
    }

    /// Asks git for credentials for `request_url`, as git-remote-http would.
    async fn fill(creds: &Credentials, remote: &str, request_url: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("git");
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["-c", "credential.helper="]);
        let handoff = creds.hand_to(&mut cmd, remote).unwrap();
        let mut child = cmd
            .args(["credential", "fill"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(handoff);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("url={request_url}\n\n").as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test]
    async fn git_gets_the_credentials_for_the_remote_origin_only() {
        let creds = creds("s3cret");
        let answer =
            fill(&creds, "https://git.example.com/acme/widget.git", "https://git.example.com/acme/x.git").await;
        assert!(answer.contains("username=bot\n") && answer.contains("password=s3cret\n"), "{answer}");
        let other = fill(&creds, "https://git.example.com/acme/widget.git", "https://evil.example.com/a.git").await;
        assert!(!other.contains("s3cret"), "another host got the token: {other}");
    }

    #[test]
    fn only_http_remotes_get_credentials_and_debug_hides_them() {
        let creds = creds("s3cret");
        let mut cmd = Command::new("git");
        assert!(creds.hand_to(&mut cmd, "/srv/git/acme/widget.git").unwrap().is_none());
        assert!(creds.hand_to(&mut cmd, "ssh://git@host/acme/widget.git").unwrap().is_none());
        assert_eq!(http_origin("http://127.0.0.1:3000/a/b.git"), Some("http://127.0.0.1:3000"));
        assert_eq!(http_origin("https://host"), Some("https://host"));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn a_token_with_a_line_break_is_refused() {
        let mut cmd = Command::new("git");
        let err = creds("tok\nhost=evil").hand_to(&mut cmd, "https://host/a.git").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
