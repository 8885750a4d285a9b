//! Writing operator files the way the reloader expects them: atomically (temporary
//! file in the same directory, fsync, rename, fsync of the directory), so a running
//! server sees the old file or the new one, never half of one; and editing tenant
//! files with `toml_edit`, so the operator's comments and layout survive `tenant set`.

use std::io::Write;
use std::path::Path;

use crate::policy::{Mode, MxPattern};

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Hidden and without the `.toml` suffix, so the watcher never takes it for a tenant.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A tenant file being created or edited.
pub struct TenantEdit {
    doc: toml_edit::DocumentMut,
}

impl TenantEdit {
    pub fn new(domain: &str) -> TenantEdit {
        let mut doc = toml_edit::DocumentMut::new();
        doc.decor_mut().set_prefix(format!(
            "# MTA-STS policy for {domain}, written by `stsedge tenant`; edit freely.\n"
        ));
        TenantEdit { doc }
    }

    /// Opens existing text for editing. Syntax errors are reported by `parse_tenant`,
    /// which the caller runs on the result anyway.
    pub fn parse(text: &str) -> Result<TenantEdit, String> {
        text.parse::<toml_edit::DocumentMut>()
            .map(|doc| TenantEdit { doc })
            .map_err(|e| e.to_string())
    }

    pub fn mode(&mut self, mode: Mode) -> &mut Self {
        self.doc["mode"] = toml_edit::value(mode.as_str());
        self
    }

    pub fn max_age(&mut self, max_age: u32) -> &mut Self {
        self.doc["max_age"] = toml_edit::value(i64::from(max_age));
        self
    }

    pub fn mx(&mut self, mx: &[MxPattern]) -> &mut Self {
        let list: toml_edit::Array = mx.iter().map(|m| m.to_string()).collect();
        self.doc["mx"] = toml_edit::value(list);
        self
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_comments_and_other_keys() {
        let text = "# customer 42\nmode = \"testing\" # for now\nmx = [\"a.example.com\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let mut edit = TenantEdit::parse(text).unwrap();
        edit.mode(Mode::Enforce).max_age(3600);
        let out = edit.text();
        assert!(out.starts_with("# customer 42\n"), "{out}");
        assert!(out.contains("mode = \"enforce\""), "{out}");
        assert!(out.contains("cert = \"c.pem\""), "{out}");
        assert!(out.contains("max_age = 3600"), "{out}");
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.toml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left behind"
        );
    }
}
