//! Reading a git bundle ourselves: its header, then its pack, which kugetsu
//! indexes with checks that `git fetch` from a bundle would skip.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::GitError;

/// Headers kugetsu writes are a few lines of object names and ref names.
const MAX_HEADER: u64 = 1024 * 1024;

/// The bundle's pack: the file, positioned just after the header. The header
/// (`# v2 git bundle` or `# v3 git bundle`, then capabilities, prerequisites
/// and refs) ends at its first empty line.
pub fn pack_of(bundle: &Path) -> Result<std::fs::File, GitError> {
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
    }
    let mut file = reader.into_inner();
    file.seek(SeekFrom::Start(offset)).map_err(GitError::Spawn)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_after(contents: &[u8]) -> Result<Vec<u8>, GitError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.bundle");
        std::fs::write(&path, contents).unwrap();
        let mut rest = Vec::new();
        pack_of(&path)?.read_to_end(&mut rest).unwrap();
        Ok(rest)
    }

    #[test]
    fn the_pack_starts_after_the_first_empty_line() {
        let bundle = b"# v2 git bundle\n-aaaa base\nbbbb HEAD\n\nPACK\n\nrest";
        assert_eq!(pack_after(bundle).unwrap(), b"PACK\n\nrest");
        assert_eq!(pack_after(b"# v3 git bundle\n@object-format=sha1\n\nPACK").unwrap(), b"PACK");
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(pack_after(b"PACK").is_err());
        assert!(pack_after(b"# v9 git bundle\n\nPACK").is_err());
        assert!(pack_after(b"# v2 git bundle\nbbbb HEAD\n").is_err(), "no end to the header");
        let mut endless = b"# v2 git bundle\n".to_vec();
        endless.resize(2 * MAX_HEADER as usize, b'a');
        assert!(pack_after(&endless).is_err());
    }
}
