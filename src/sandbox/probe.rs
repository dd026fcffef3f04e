//! Whether this host can run the sandbox, asked once at start.

use std::process::Stdio;

use super::{Jail, Sandbox, SandboxKind};

/// Runs `true` in an empty jail. Fails with what to do when the host forbids the
/// namespaces bubblewrap needs (a container's seccomp or AppArmor profile, a
/// kernel with unprivileged user namespaces off) or has no bubblewrap.
pub async fn check(sandbox: &Sandbox) -> Result<(), String> {
    if sandbox.kind() == SandboxKind::None {
        tracing::warn!(
            "sandbox = \"none\": agents run unconfined and can read and change everything kugetsu's user can, \
             including kugetsu's database, other issues' working copies and its secrets"
        );
        return Ok(());
    }
    let jail = Jail { dir: "/".into(), ..Jail::default() };
    let mut cmd = sandbox.command("true", &jail);
    cmd.env_clear().env("PATH", "/usr/bin:/bin").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let output = match cmd.output().await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "kugetsu runs every agent in a bubblewrap sandbox, and `{}` is not installed. \
                 Install it (Debian and Ubuntu: `apt-get install bubblewrap`), \
                 or set `sandbox = \"none\"` to run agents unconfined",
                sandbox.bwrap.display()
            ));
        }
        Err(e) => return Err(format!("cannot run bubblewrap ({}): {e}", sandbox.bwrap.display())),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(format!(
        "kugetsu runs every agent in a bubblewrap sandbox, and this host refused it: {stderr}. \
         The sandbox needs user, mount and PID namespaces. In a container, run with the security \
         options in deploy/docker-compose.yml; on a host, enable unprivileged user namespaces \
         (`sysctl kernel.unprivileged_userns_clone=1`, or on Ubuntu \
         `sysctl kernel.apparmor_restrict_unprivileged_userns=0`). \
         Only if agents may see everything kugetsu's user can, set `sandbox = \"none\"`"
    ))
}
