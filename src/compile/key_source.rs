//! Private keys read where the flow says: the value itself, a file, an environment variable or
//! a command's output (a vault or KMS CLI), so no secret store's SDK is built into the adapter.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Loader;
use crate::config::model::{KeyFrom, KeySource};
use crate::config::secret::Secret;
use crate::config::yaml::SpannedDoc;

const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a command's stderr quoted in a diagnostic.
const STDERR_QUOTED: usize = 500;

impl Loader<'_> {
    /// The key `source` at `path` in the flow, or None with a diagnostic saying why.
    pub(super) fn key(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        source: &KeySource,
    ) -> Option<Secret> {
        let from = match source {
            KeySource::Value(secret) => return Some(secret.clone()),
            KeySource::From(from) => from,
        };
        match self.read_key(from) {
            Ok(key) if key.trim().is_empty() => {
                self.diagnostics
                    .push(doc.diagnostic(file, path, "the key read is empty"));
                None
            }
            Ok(key) => Some(Secret::new(key.trim())),
            Err((message, hint)) => {
                let mut d = doc.diagnostic(file, path, message);
                if let Some(hint) = hint {
                    d = d.hint(hint);
                }
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// The key's text, or what went wrong and a hint. Never quotes what was read.
    fn read_key(&self, from: &KeyFrom) -> Result<String, (String, Option<String>)> {
        let one_of = "give exactly one of `file`, `env` and `command`";
        match (&from.file, &from.env, &from.command) {
            (Some(rel), None, None) => std::fs::read_to_string(self.layout.root.join(rel))
                .map_err(|e| (format!("cannot read the key file `{rel}`: {e}"), None)),
            (None, Some(name), None) => self.env.get(name).ok_or_else(|| {
                (
                    format!("environment variable `{name}` is not set"),
                    Some(format!("export {name}=<base64 key>")),
                )
            }),
            (None, None, Some(argv)) => {
                run_key_command(argv, from.timeout.map_or(DEFAULT_COMMAND_TIMEOUT, |d| d.0))
            }
            _ => Err((
                one_of.to_string(),
                Some(
                    "signing_private_key: { command: [vault, kv, get, -field=key, secret/lab] }"
                        .into(),
                ),
            )),
        }
    }
}

/// Runs `argv` (no shell) and returns its standard output; a failure quotes its stderr only.
fn run_key_command(argv: &[String], timeout: Duration) -> Result<String, (String, Option<String>)> {
    let Some((program, args)) = argv.split_first() else {
        return Err((
            "`command` is empty".into(),
            Some("command: [vault, kv, get, -field=key, secret/lab]".into()),
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (format!("cannot run `{program}`: {e}"), None))?;
    // Read both pipes while waiting, so a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err((
                    format!("`{program}` did not finish within {timeout:?}"),
                    Some("raise `timeout:` beside `command:` if the secret store is slow".into()),
                ));
            }
            Err(e) => return Err((format!("waiting for `{program}`: {e}"), None)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr: String = stderr.trim().chars().take(STDERR_QUOTED).collect();
        return Err((format!("`{program}` failed ({status}): {stderr}"), None));
    }
    String::from_utf8(stdout).map_err(|_| {
        (
            format!("`{program}` printed something that is not text"),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_command_s_output_is_the_key() {
        let key = run_key_command(&sh("echo c2VjcmV0"), Duration::from_secs(5)).unwrap();
        assert_eq!(key.trim(), "c2VjcmV0");
    }

    #[test]
    fn a_failing_command_reports_its_stderr_never_its_stdout() {
        let (message, _) = run_key_command(
            &sh("echo leaked-key; echo 'permission denied' >&2; exit 3"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(message.contains("permission denied"), "{message}");
        assert!(!message.contains("leaked-key"), "{message}");
    }

    #[test]
    fn a_slow_command_is_stopped() {
        let started = Instant::now();
        let (message, _) = run_key_command(&sh("sleep 5"), Duration::from_millis(200)).unwrap_err();
        assert!(message.contains("did not finish"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_missing_program_is_reported() {
        let (message, _) =
            run_key_command(&["/nonexistent/vault".to_string()], Duration::from_secs(1))
                .unwrap_err();
        assert!(message.contains("cannot run"), "{message}");
    }
}
