//! Issue refs: `instance/owner/repo#number`, the key for everything kugetsu keeps.
//!
//! Every segment is validated before anything derived from it touches the filesystem
//! or a git command line, so a ref can be turned into paths and branch names safely.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest segment we accept; GitHub caps repository names at 100 characters.
const MAX_SEGMENT_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("`{input}` is not a ref of the form instance/owner/repo#number")]
    Shape { input: String },
    #[error("invalid {what} `{value}`: {why}")]
    Segment { what: &'static str, value: String, why: &'static str },
    #[error("invalid issue number `{0}`: expected a whole number above 0 without leading zeros")]
    Number(String),
}

/// A forge instance name from the configuration, such as `github` or `gitea`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl InstanceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = RefError;
    fn try_from(value: String) -> Result<Self, RefError> {
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let why = if value.is_empty() {
            Some("it is empty")
        } else if value.len() > 63 {
            Some("it is longer than 63 characters")
        } else if !value.chars().all(valid_char) {
            Some("only a-z, 0-9, `-` and `_` are allowed")
        } else if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Some("it must start with a letter or digit")
        } else {
            None
        };
        match why {
            Some(why) => Err(RefError::Segment { what: "instance name", value, why }),
            None => Ok(Self(value)),
        }
    }
}

impl From<InstanceName> for String {
    fn from(value: InstanceName) -> Self {
        value.0
    }
}

impl FromStr for InstanceName {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates an owner or repository name and lower-cases it, because both forges
/// treat these names case-insensitively.
fn forge_name(what: &'static str, value: &str) -> Result<String, RefError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_SEGMENT_LEN {
        Some("it is longer than 100 characters")
    } else if !value.chars().all(valid_char) {
        Some("only ASCII letters, digits, `-`, `_` and `.` are allowed")
    } else if value.starts_with(['.', '-']) {
        Some("it must not start with `.` or `-`")
    } else if value.ends_with(".lock") || value.contains("..") {
        Some("it must not contain `..` or end in `.lock`")
    } else {
        None
    };
    match why {
        Some(why) => Err(RefError::Segment { what, value: value.to_owned(), why }),
        None => Ok(value.to_ascii_lowercase()),
    }
}

/// A repository on a configured instance: `instance/owner/repo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoRef {
    instance: InstanceName,
    owner: String,
    name: String,
}

impl RepoRef {
    pub fn new(instance: InstanceName, owner: &str, name: &str) -> Result<Self, RefError> {
        Ok(Self { instance, owner: forge_name("owner", owner)?, name: forge_name("repository name", name)? })
    }

    pub fn instance(&self) -> &InstanceName {
        &self.instance
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `instance/owner/repo` as a relative path; safe because every segment is validated.
    pub fn rel_path(&self) -> PathBuf {
        [self.instance.as_str(), &self.owner, &self.name].iter().collect()
    }

    pub fn issue(&self, number: u64) -> Result<IssueRef, RefError> {
        if number == 0 {
            return Err(RefError::Number("0".into()));
        }
        Ok(IssueRef { repo: self.clone(), number })
    }
}

impl FromStr for RepoRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let shape = || RefError::Shape { input: s.to_owned() };
        let mut parts = s.split('/');
        let (Some(instance), Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        Self::new(instance.parse()?, owner, name)
    }
}

impl TryFrom<String> for RepoRef {
    type Error = RefError;
    fn try_from(value: String) -> Result<Self, RefError> {
        value.parse()
    }
}

impl From<RepoRef> for String {
    fn from(value: RepoRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.instance, self.owner, self.name)
    }
}

/// An issue or pull request: `instance/owner/repo#number`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssueRef {
    repo: RepoRef,
    number: u64,
}

impl IssueRef {
    pub fn repo(&self) -> &RepoRef {
        &self.repo
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// `instance/owner/repo/number` as a relative path.
    pub fn rel_path(&self) -> PathBuf {
        self.repo.rel_path().join(self.number.to_string())
    }
}

impl FromStr for IssueRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let Some((repo, number)) = s.split_once('#') else {
            return Err(RefError::Shape { input: s.to_owned() });
        };
        let repo: RepoRef = repo.parse()?;
        let canonical = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0');
        let parsed = canonical.then(|| number.parse::<u64>().ok()).flatten();
        match parsed {
            Some(n) => repo.issue(n),
            None => Err(RefError::Number(number.to_owned())),
        }
    }
}

impl TryFrom<String> for IssueRef {
    type Error = RefError;
    fn try_from(value: String) -> Result<Self, RefError> {
        value.parse()
    }
}

impl From<IssueRef> for String {
    fn from(value: IssueRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for IssueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["github/acme/widget#1", "gitea-1/a_b/c.d-e#12345", "x/o/r#18446744073709551615"] {
            let r: IssueRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(r.to_string().parse::<IssueRef>().unwrap(), r);
        }
    }

    #[test]
    fn lower_cases_owner_and_repo() {
        let r: IssueRef = "github/Acme/Widget#3".parse().unwrap();
        assert_eq!(r.to_string(), "github/acme/widget#3");
        assert_eq!(r.rel_path(), PathBuf::from("github/acme/widget/3"));
    }

    #[test]
    fn rejects_malformed_refs() {
        let bad = [
            "",
            "github/acme/widget",
            "github/acme/widget#",
            "github/acme/widget#0",
            "github/acme/widget#01",
            "github/acme/widget#-1",
            "github/acme/widget#+1",
            "github/acme/widget#1#2",
            "github/acme#1",
            "github/acme/widget/extra#1",
            "github/../widget#1",
            "github/acme/..#1",
            "github/./x#1",
            "github/acme/.git#1",
            "github//widget#1",
            "/acme/widget#1",
            "GitHub/acme/widget#1",
            "github/-rf/x#1",
            "github/acme/wid\0get#1",
            "github/acme/wid get#1",
            "github/acme/wïdget#1",
            "github/acme/a\nb#1",
            "github/acme/x.lock#1",
            "github/acme/widget#99999999999999999999",
            "github/acme/a..b#1",
        ];
        for s in bad {
            assert!(s.parse::<IssueRef>().is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = "github/acme/..#1".parse::<IssueRef>().unwrap_err();
        assert!(err.to_string().contains("repository name"), "{err}");
        let err = "github/acme/widget#0".parse::<IssueRef>().unwrap_err();
        assert!(err.to_string().contains("issue number"), "{err}");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r: IssueRef = "gitea/acme/widget#7".parse().unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"gitea/acme/widget#7\"");
        assert!(serde_json::from_str::<IssueRef>("\"gitea/acme/../x#7\"").is_err());
    }
}
