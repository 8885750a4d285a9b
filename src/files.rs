//! File identity and reads for the reloader: the one place that decides whether a
//! file changed. A file is read with one path walk (open, then fstat and read the open
//! descriptor), so what was read and the identity recorded for it always match.

use std::io::Read;
use std::path::Path;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileIdentity {
    fn from_metadata(m: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }

    /// Follows symlinks, so a certbot-style `live/` link swap is a new identity.
    pub fn of(path: &Path) -> Option<FileIdentity> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| FileIdentity::from_metadata(&m))
    }
}

/// Reads a whole regular file and the identity of exactly that version.
pub fn read(path: &Path) -> std::io::Result<(Vec<u8>, FileIdentity)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    // One read of the length fstat gave, not read_to_end's extra read to see EOF: at
    // 100 000 tenants start-up reads 300 000 small files. A file that grows meanwhile
    // has a new identity, so the watcher brings it back.
    let mut bytes = vec![0u8; meta.len() as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok((bytes, FileIdentity::from_metadata(&meta)))
}
