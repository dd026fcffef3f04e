use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::forge::{Forge, ForgeError, Permission};
use crate::issue_ref::RepoRef;

/// Collaborator permissions, trusted for a short while so a busy issue does not
/// ask the forge on every comment. Errors are never cached.
pub struct PermissionCache {
    ttl: Duration,
    entries: Mutex<HashMap<(RepoRef, String), (Permission, Instant)>>,
}

impl PermissionCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub async fn permission(&self, forge: &dyn Forge, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        let key = (repo.clone(), user.to_ascii_lowercase());
        let cached = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(p, _)| *p));
        if let Some(permission) = cached {
            return Ok(permission);
        }
        let permission = forge.permission(repo, user).await?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, (permission, Instant::now()));
        }
        Ok(permission)
    }
}
