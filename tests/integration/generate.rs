//! `trafmon generate`: bash completes from the script it prints, groff
//! renders the pages it writes without a warning, and neither reads the
//! configuration.

use std::{path::PathBuf, process::Command};

use crate::harness::trafmon_bin;

/// No configuration at this path: `generate` must not need one.
const NO_CONFIG: &str = "/nonexistent/trafmon.toml";

/// Lines typed so far, and what bash's completion offers for each.
const LINES: [(&str, &str); 6] = [
    ("trafmon rep", "report"),
    ("trafmon ch", "check"),
    ("trafmon report --mon", "--monthly"),
    ("trafmon report --units ", "iec si bytes"),
    ("trafmon report --sort t", "total tx"),
    ("trafmon generate completions f", "fish"),
];

#[test]
fn bash_completes_commands_options_and_values_from_the_script() {
    // The completion function, called the way bash calls it on Tab.
    let mut script = String::from(
        r#"source <("$1" --config "$2" generate completions bash) || exit 1
complete -p trafmon >/dev/null || exit 1
complete_line() {
    read -ra COMP_WORDS <<< "$1"
    [[ $1 == *' ' ]] && COMP_WORDS+=('')
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$1; COMP_POINT=${#1}; COMPREPLY=()
    _trafmon trafmon "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
    echo "${COMPREPLY[*]}"
}
"#,
    );
    for (line, _) in LINES {
        script.push_str(&format!("complete_line '{line}'\n"));
    }
    let out = Command::new("bash")
        .args(["-c", &script, "bash"])
        .arg(trafmon_bin())
        .arg(NO_CONFIG)
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let offered = String::from_utf8_lossy(&out.stdout);
    let expected: Vec<&str> = LINES.iter().map(|(_, words)| *words).collect();
    assert_eq!(offered.lines().collect::<Vec<_>>(), expected);
}

/// A directory under the temporary one, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn groff_renders_every_man_page_without_a_warning() {
    let dir = TempDir(std::env::temp_dir().join(format!("trafmon-man-{}", std::process::id())));
    std::fs::create_dir(&dir.0).expect("mkdir");
    let out = Command::new(trafmon_bin())
        .args(["--config", NO_CONFIG, "generate", "man"])
        .arg(&dir.0)
        .output()
        .expect("run trafmon generate man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 12, "{listed}");
    for page in listed.lines() {
        let rendered = Command::new("groff")
            // Plain text: no bold or underline by overstriking.
            .args(["-man", "-Tutf8", "-ww", "-P-cbu"])
            .arg(page)
            .output()
            .expect("groff (Debian's groff-base; `cargo xtask test` installs it)");
        let warnings = String::from_utf8_lossy(&rendered.stderr);
        assert!(
            rendered.status.success() && warnings.is_empty(),
            "{page}: {warnings}"
        );
        let text = String::from_utf8_lossy(&rendered.stdout);
        let name = std::path::Path::new(page)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a page name");
        assert!(
            text.contains("NAME") && text.contains(name),
            "{page}: {text}"
        );
    }
    let report = std::fs::read_to_string(dir.0.join("trafmon-report.1")).expect("report page");
    assert!(report.contains("\\-\\-monthly"), "{report}");
}
