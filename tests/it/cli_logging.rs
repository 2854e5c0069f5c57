//! Log lines of the `tkr-embed` binary: plain text unless stderr is a
//! terminal, and never coloured under NO_COLOR.
use std::process::Command;

/// Runs `config show` with an unknown TKR_ variable (logged as a warning),
/// stderr captured through a pipe.
fn warning_run(no_color: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tkr-embed"));
    cmd.args(["config", "show", "--json"])
        .current_dir(std::env::temp_dir())
        .env_remove("TKR_LOG")
        .env("TKR_NO_SUCH_SETTING", "1");
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn logs_to_a_pipe_have_no_ansi_codes() {
    for no_color in [None, Some(""), Some("1")] {
        let stderr = warning_run(no_color);
        assert!(
            stderr.contains("WARN") && stderr.contains("TKR_NO_SUCH_SETTING"),
            "NO_COLOR={no_color:?}: {stderr:?}"
        );
        assert!(
            !stderr.contains("\x1b["),
            "NO_COLOR={no_color:?}: {stderr:?}"
        );
    }
}
