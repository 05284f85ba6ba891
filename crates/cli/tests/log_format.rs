//! `--log-format json` (or `LONGCAT_LOG_FORMAT=json`) writes one JSON object per log line;
//! the default is text. Driven through `longcat worker` with a job database URL it cannot
//! open: it logs `ffmpeg found` first, then exits with the error.

use std::process::Command;

fn worker(dir: &std::path::Path, flag: Option<&str>, env: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_longcat"));
    cmd.arg("worker");
    if let Some(f) = flag {
        cmd.args(["--log-format", f]);
    }
    cmd.args(["--database-url", "bogus://nowhere"])
        .env_remove("LONGCAT_LOG_FORMAT")
        .env_remove("LONGCAT_CONFIG")
        .env("RUST_LOG", "info")
        .current_dir(dir);
    if let Some(v) = env {
        cmd.env("LONGCAT_LOG_FORMAT", v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "a bogus database URL must fail");
    String::from_utf8(out.stderr).unwrap()
}

/// The `ffmpeg found` line of `stderr`.
fn ffmpeg_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("ffmpeg found"))
        .unwrap_or_else(|| panic!("no `ffmpeg found` line:\n{stderr}"))
}

#[test]
fn json_log_lines_are_json_objects() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, env) in [(Some("json"), None), (None, Some("json"))] {
        let stderr = worker(dir.path(), flag, env);
        let line: serde_json::Value = serde_json::from_str(ffmpeg_line(&stderr))
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stderr}"));
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["fields"]["message"], "ffmpeg found", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        // Every log line is JSON; only the final error report is plain text.
        for l in stderr.lines().filter(|l| !l.starts_with("error:")) {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_ok(),
                "{l}\n{stderr}"
            );
        }
    }
}

#[test]
fn text_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, env) in [(None, None), (Some("text"), Some("json"))] {
        let stderr = worker(dir.path(), flag, env);
        let line = ffmpeg_line(&stderr);
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "{line}"
        );
        assert!(line.contains("INFO"), "{line}");
    }
}
