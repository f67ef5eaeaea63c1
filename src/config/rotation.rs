//! A key rotation written into files: the `next_key` block inserted under a flow's `network`,
//! an entry appended to a registry file's `subscribers`. Each edit is checked by parsing its
//! result before anything is written, and a file is written whole (a temporary file beside it,
//! synced, renamed over it), so a file is never left half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::yaml::parse_literal;

#[derive(Debug, thiserror::Error)]
pub enum RotationEditError {
    /// The file is not shaped so the edit can be made safely.
    #[error("{file}:{line}: {reason}")]
    Refused {
        file: PathBuf,
        line: u32,
        reason: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// Where the next private key is read from, as the flow names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Env(String),
    File(String),
}

/// A flow's `next_key` block.
#[derive(Debug, Clone)]
pub struct NextKeyBlock {
    pub key_id: String,
    pub key: KeyRef,
    pub sign_from: Option<jiff::Timestamp>,
}

impl NextKeyBlock {
    /// The block as YAML under `network:`, each line indented by `indent` spaces. Without a
    /// `sign_from`, the line is there commented out, to be set in the switching step.
    pub fn to_yaml(&self, indent: usize) -> String {
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let pad = " ".repeat(indent);
        let key = match &self.key {
            KeyRef::Env(name) => format!("{{ env: {} }}", quote(name)),
            KeyRef::File(path) => format!("{{ file: {} }}", quote(path)),
        };
        let sign_from = match self.sign_from {
            Some(t) => format!("{pad}  sign_from: {t}\n"),
            None => format!(
                "{pad}  # sign_from: {}   # when signing switches (step 4)\n",
                jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
                    .unwrap_or_default()
            ),
        };
        format!(
            "{pad}next_key:\n{pad}  key_id: {}\n{pad}  signing_private_key: {key}\n{sign_from}",
            quote(&self.key_id)
        )
    }
}

/// The key id after `current`: its trailing number plus one (`lab-key-1` -> `lab-key-2`), or
/// `-2` appended when it ends without one.
pub fn next_key_id(current: &str) -> String {
    let digits = current.len() - current.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = current.split_at(current.len() - digits);
    match number.parse::<u64>() {
        Ok(n) => format!("{stem}{}", n.saturating_add(1)),
        Err(_) => format!("{current}-2"),
    }
}

/// `text` (the flow file `file`) with `block` inserted after `network.key_id`, at its
/// indentation. Refused when the flow has a `next_key` already, or `key_id` is not a block
/// mapping key on a line of its own.
pub fn insert_next_key(
    file: &Path,
    text: &str,
    block: &NextKeyBlock,
) -> Result<String, RotationEditError> {
    let refuse = |line: u32, reason: &str| RotationEditError::Refused {
        file: file.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let (doc, _) = parse_literal(file, text).map_err(|d| refuse(d.line.max(1), &d.message))?;
    let network = &doc.value["network"];
    if !network["next_key"].is_null() {
        let (line, _) = doc.locate("network.next_key");
        return Err(refuse(
            line,
            "the flow has a `next_key` already: finish that rotation first",
        ));
    }
    if !network["key_id"].is_string() {
        let (line, _) = doc.locate("network");
        return Err(refuse(line, "`network` has no `key_id` to rotate from"));
    }
    let (line, col) = doc.locate("network.key_id");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = line as usize;
    let key_line = lines.get(at.wrapping_sub(1)).copied().unwrap_or_default();
    let indent = col.saturating_sub(1) as usize;
    if !key_line[..indent.min(key_line.len())].trim().is_empty()
        || !key_line[indent.min(key_line.len())..].starts_with("key_id")
    {
        return Err(refuse(
            line,
            "`key_id` is not on a line of its own under `network:`; add the block by hand",
        ));
    }
    let mut out = String::with_capacity(text.len() + 200);
    for l in &lines[..at] {
        out.push_str(l);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&block.to_yaml(indent));
    for l in &lines[at..] {
        out.push_str(l);
    }
    let (check, _) = parse_literal(file, &out).map_err(|d| refuse(line, &d.message))?;
    if check.value["network"]["next_key"]["key_id"].as_str() != Some(block.key_id.as_str())
        || check.value["network"]["key_id"] != network["key_id"]
    {
        return Err(refuse(
            line,
            "the edited file would not read as intended; add the block by hand",
        ));
    }
    Ok(out)
}

/// `text` (the registry file `file`) with `item` (an entry as a `- ...` list item, indented
/// like the file's entries) appended to `subscribers`, which must be the file's last block.
pub fn append_subscriber(
    file: &Path,
    text: &str,
    item: impl Fn(usize) -> String,
) -> Result<String, RotationEditError> {
    let refuse = |line: u32, reason: &str| RotationEditError::Refused {
        file: file.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let (doc, _) = parse_literal(file, text).map_err(|d| refuse(d.line.max(1), &d.message))?;
    let Some(before) = doc.value["subscribers"].as_array().map(Vec::len) else {
        return Err(refuse(1, "no `subscribers:` list"));
    };
    // The column of the first entry's first key, less the "- " before it.
    let indent = match before {
        0 => 2,
        _ => doc.locate("subscribers[0]").1.saturating_sub(3) as usize,
    };
    let mut out = text.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&item(indent));
    let (check, _) = parse_literal(file, &out).map_err(|d| refuse(1, &d.message))?;
    if check.value["subscribers"].as_array().map(Vec::len) != Some(before + 1) {
        return Err(refuse(
            1,
            "the entry cannot be appended (the list is not the file's last block); add it by hand",
        ));
    }
    Ok(out)
}

/// Replaces `path` with `text` whole: written to a temporary file in the same directory,
/// synced, renamed over `path` (keeping its permissions). A failure leaves `path` as it was.
pub fn write_whole(path: &Path, text: &str) -> Result<(), RotationEditError> {
    let io = |source| RotationEditError::Io {
        file: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = "name: lab\nrole: bpp\nnetwork:\n  subscriber_id: lab.example\n  key_id: lab-key-1   # the registry's id\n  signing_private_key: { env: LAB_KEY }\ndomain: agri.soil\n";

    fn block() -> NextKeyBlock {
        NextKeyBlock {
            key_id: "lab-key-2".into(),
            key: KeyRef::Env("LAB_KEY_2".into()),
            sign_from: Some("2026-12-01T12:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn key_ids_count_on() {
        assert_eq!(next_key_id("gfsl-key-1"), "gfsl-key-2");
        assert_eq!(next_key_id("k9"), "k10");
        assert_eq!(next_key_id("lab"), "lab-2");
        assert_eq!(next_key_id("2026"), "2027");
    }

    #[test]
    fn the_block_goes_under_network_and_reads_back() {
        let out = insert_next_key(Path::new("lab.yaml"), FLOW, &block()).unwrap();
        let (doc, _) = parse_literal(Path::new("lab.yaml"), &out).unwrap();
        let next = &doc.value["network"]["next_key"];
        assert_eq!(next["key_id"], "lab-key-2");
        assert_eq!(next["signing_private_key"]["env"], "LAB_KEY_2");
        assert_eq!(next["sign_from"], "2026-12-01T12:00:00Z");
        assert_eq!(
            doc.value["network"]["signing_private_key"]["env"],
            "LAB_KEY"
        );
        assert_eq!(doc.value["domain"], "agri.soil");
        assert!(out.contains("# the registry's id"), "comments are kept");
    }

    #[test]
    fn a_second_rotation_or_an_inline_network_is_refused() {
        let once = insert_next_key(Path::new("lab.yaml"), FLOW, &block()).unwrap();
        let err = insert_next_key(Path::new("lab.yaml"), &once, &block()).unwrap_err();
        assert!(
            err.to_string().contains("has a `next_key` already"),
            "{err}"
        );
        let inline = "name: lab\nnetwork: { subscriber_id: a, key_id: k1 }\n";
        let err = insert_next_key(Path::new("lab.yaml"), inline, &block()).unwrap_err();
        assert!(err.to_string().starts_with("lab.yaml:2:"), "{err}");
    }

    #[test]
    fn an_entry_is_appended_at_the_files_indentation() {
        let file = "subscribers:\n    - subscriber_id: a\n      type: BPP\n";
        let out = append_subscriber(Path::new("r.yaml"), file, |indent| {
            format!(
                "{}- subscriber_id: b\n{}  type: BAP\n",
                " ".repeat(indent),
                " ".repeat(indent)
            )
        })
        .unwrap();
        let (doc, _) = parse_literal(Path::new("r.yaml"), &out).unwrap();
        assert_eq!(doc.value["subscribers"][1]["subscriber_id"], "b");
        let trailing = "subscribers:\n  - subscriber_id: a\nother: 1\n";
        assert!(append_subscriber(Path::new("r.yaml"), trailing, |_| "  - x: 1\n".into()).is_err());
    }

    #[test]
    fn a_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.yaml");
        std::fs::write(&path, "old").unwrap();
        write_whole(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
    }
}
