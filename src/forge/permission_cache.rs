use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Forge, ForgeError, Permission};
use crate::issue_ref::RepoRef;

/// Entries kept at most; past it the oldest answers are forgotten first.
const CAPACITY: usize = 10_000;

/// Collaborator permissions, trusted for a short while so a busy issue does not
/// ask the forge on every comment. Errors are never cached. Bounded, so a flood
/// of strangers cannot grow it without end.
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
        self.remember(key, permission);
        Ok(permission)
    }

    /// Whether the forge said, at some point still remembered, that `user` may
    /// trigger runs in `repo`. Never asks the forge.
    pub fn is_known_writer(&self, repo: &RepoRef, user: &str) -> bool {
        let key = (repo.clone(), user.to_ascii_lowercase());
        self.entries.lock().ok().and_then(|e| e.get(&key).map(|(p, _)| p.can_trigger())).unwrap_or(false)
    }

    /// Whether the forge said, at some point still remembered, that `user` may
    /// not trigger runs in `repo`. Never asks the forge.
    pub fn is_known_stranger(&self, repo: &RepoRef, user: &str) -> bool {
        let key = (repo.clone(), user.to_ascii_lowercase());
        self.entries.lock().ok().and_then(|e| e.get(&key).map(|(p, _)| !p.can_trigger())).unwrap_or(false)
    }

    fn remember(&self, key: (RepoRef, String), permission: Permission) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= CAPACITY {
                // Still full of fresh answers: drop the older half.
                let mut ages: Vec<Instant> = entries.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                entries.retain(|_, (_, at)| *at > cutoff);
            }
        }
        entries.insert(key, (permission, Instant::now()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_remembers_writers() {
        let cache = PermissionCache::new(Duration::from_secs(60));
        let repo: RepoRef = "gitea/acme/widget".parse().unwrap();
        cache.remember((repo.clone(), "alice".into()), Permission::Write);
        assert!(cache.is_known_writer(&repo, "ALICE"));
        for i in 0..(CAPACITY + 500) {
            cache.remember((repo.clone(), format!("stranger-{i}")), Permission::Read);
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        assert!(!cache.is_known_writer(&repo, "stranger-1"));
    }
}
