//! Reading a git bundle ourselves: its header, then its pack, which kugetsu
//! indexes with checks that `git fetch` from a bundle would skip.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::GitError;

/// Headers kugetsu writes are a few lines of object names and ref names.
const MAX_HEADER: u64 = 1024 * 1024;

/// A bundle of one ref, `HEAD`, as read by kugetsu.
#[derive(Debug)]
pub struct Bundle {
    /// The commit the bundle names as `HEAD`.
    pub head: String,
    /// The file, positioned at the start of the pack.
    pub pack: std::fs::File,
}

impl Bundle {
    /// Reads the bundle's header and finds its pack. The header (`# v2 git bundle`
    /// or `# v3 git bundle`, then capabilities, prerequisites and refs) ends at its
    /// first empty line, and must name `HEAD` with an object name.
    pub fn open(bundle: &Path) -> Result<Bundle, GitError> {
        read(bundle)
    }
}

fn read(bundle: &Path) -> Result<Bundle, GitError> {
    let bad = |why: &str| GitError::Failed { args: "reading the bundle".into(), stderr: why.into() };
    // Never through a link: the bundle was written where the agent's git could write.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(bundle)
        .map_err(GitError::Spawn)?;
    let mut reader = BufReader::new(file);
    let mut offset: u64 = 0;
    let mut line = Vec::new();
    let mut first = true;
    let mut head = None;
    loop {
        line.clear();
        let read = reader.by_ref().take(MAX_HEADER - offset).read_until(b'\n', &mut line).map_err(GitError::Spawn)?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Err(bad("the bundle's header does not end"));
        }
        offset += read as u64;
        if first && !matches!(line.as_slice(), b"# v2 git bundle\n" | b"# v3 git bundle\n") {
            return Err(bad("not a git bundle"));
        }
        first = false;
        if line == b"\n" {
            break;
        }
        if let Some(sha) = line.strip_suffix(b" HEAD\n").filter(|sha| is_object_name(sha)) {
            head = Some(String::from_utf8_lossy(sha).into_owned());
        }
    }
    let head = head.ok_or_else(|| bad("the bundle names no HEAD"))?;
    let mut pack = reader.into_inner();
    pack.seek(SeekFrom::Start(offset)).map_err(GitError::Spawn)?;
    Ok(Bundle { head, pack })
}

fn is_object_name(text: &[u8]) -> bool {
    matches!(text.len(), 40 | 64) && text.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pack_after(contents: &[u8]) -> Result<(String, Vec<u8>), GitError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.bundle");
        std::fs::write(&path, contents).unwrap();
        let mut bundle = Bundle::open(&path)?;
        let mut rest = Vec::new();
        bundle.pack.read_to_end(&mut rest).unwrap();
        Ok((bundle.head, rest))
    }

    #[test]
    fn the_pack_starts_after_the_first_empty_line() {
        let bundle = format!("# v2 git bundle\n-{A} base\n{B} HEAD\n\nPACK\n\nrest");
        assert_eq!(pack_after(bundle.as_bytes()).unwrap(), (B.to_owned(), b"PACK\n\nrest".to_vec()));
        let v3 = format!("# v3 git bundle\n@object-format=sha1\n{A} HEAD\n\nPACK");
        assert_eq!(pack_after(v3.as_bytes()).unwrap(), (A.to_owned(), b"PACK".to_vec()));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(pack_after(b"PACK").is_err());
        assert!(pack_after(format!("# v9 git bundle\n{B} HEAD\n\nPACK").as_bytes()).is_err());
        assert!(pack_after(format!("# v2 git bundle\n{B} HEAD\n").as_bytes()).is_err(), "no end to the header");
        assert!(pack_after(format!("# v2 git bundle\n{B} refs/heads/x\n\nPACK").as_bytes()).is_err(), "no HEAD");
        assert!(pack_after(b"# v2 git bundle\nrefs/heads/x HEAD\n\nPACK").is_err(), "HEAD is no object name");
        let mut endless = b"# v2 git bundle\n".to_vec();
        endless.resize(2 * MAX_HEADER as usize, b'a');
        assert!(pack_after(&endless).is_err());
    }
}
