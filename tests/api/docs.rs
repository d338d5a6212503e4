//! The README and the docs as a reader follows them: every relative link leads to a file
//! that exists and every `#anchor` to a heading in it; every command of the README names
//! a subcommand, flag, feature, package, example, script or npm script that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::BIN;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines outside fenced code blocks, and the lines of the `sh` blocks.
fn prose_and_shell(text: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut prose, mut shell) = (Vec::new(), Vec::new());
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        match (fence, line.strip_prefix("```")) {
            (None, Some(lang)) => fence = Some(lang.trim()),
            (Some(_), Some(_)) => fence = None,
            (None, None) => prose.push(line),
            (Some("sh"), None) => shell.push(line),
            (Some(_), None) => {}
        }
    }
    (prose, shell)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`
/// (a repeated heading gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let (prose, _) = prose_and_shell(text);
    prose
        .iter()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(|h| {
            let slug: String = h
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            let n = seen.entry(slug.clone()).or_default();
            *n += 1;
            if *n == 1 {
                slug
            } else {
                format!("{slug}-{}", *n - 1)
            }
        })
        .collect()
}

/// `(label, target)` of every inline link outside code blocks.
fn links(text: &str) -> Vec<String> {
    let (prose, _) = prose_and_shell(text);
    let mut out = Vec::new();
    for line in prose {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out
}

fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files: Vec<PathBuf> = ["README.md", "CONTRIBUTING.md", "SECURITY.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    for dir in ["docs", "clients/rust", "clients/typescript"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn every_link_of_the_readme_and_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", doc.display()));
            } else if !anchor.is_empty() && !anchors(&read(&file)).contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The value after `flag` in `words`.
fn after<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == flag)
        .and_then(|i| words.get(i + 1).copied())
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "session-crypto {args:?} --help failed"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_of_the_readme_names_things_that_exist() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let features = read(&root.join("app/Cargo.toml"));
    let (_, shell) = prose_and_shell(&readme);
    let mut checked = 0;
    for line in shell {
        let command = line.split(" #").next().unwrap_or_default().trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        // Files the command runs or reads (scripts, examples).
        for w in &words {
            if (w.starts_with("scripts/") || w.starts_with("examples/")) && !w.contains('$') {
                assert!(root.join(w).exists(), "{command}: {w} does not exist");
                checked += 1;
            }
        }
        if let Some(feature) = after(&words, "--features") {
            for f in feature.split(',') {
                assert!(
                    features.contains(&format!("\n{f} = [")),
                    "{command}: no feature {f} in app/Cargo.toml"
                );
                checked += 1;
            }
        }
        if let Some(package) = after(&words, "-p") {
            let found = ["app", "clients/rust", "clients/cli"].iter().find(|dir| {
                read(&root.join(dir).join("Cargo.toml")).contains(&format!("name = \"{package}\""))
            });
            let dir = found.unwrap_or_else(|| panic!("{command}: no package {package}"));
            if let Some(example) = after(&words, "--example") {
                let file = root
                    .join(dir)
                    .join("examples")
                    .join(format!("{example}.rs"));
                assert!(file.exists(), "{command}: no example {example} in {dir}");
            }
            checked += 1;
        }
        if let Some(dir) = after(&words, "--prefix") {
            let package = read(&root.join(dir).join("package.json"));
            if let Some(script) = after(&words, "run") {
                assert!(
                    package.contains(&format!("\"{script}\":")),
                    "{command}: no npm script {script} in {dir}"
                );
            }
            checked += 1;
        }
        // `cargo run … -- <subcommand> [--flag …]`: the binary has them.
        if words.starts_with(&["cargo", "run"])
            && let Some(i) = words.iter().position(|w| *w == "--")
            && let Some(sub) = words.get(i + 1)
            && !words.contains(&"-p")
        {
            let flags = help(&[sub]);
            for flag in words[i + 2..].iter().filter(|w| w.starts_with("--")) {
                assert!(
                    flags.contains(flag),
                    "{command}: `session-crypto {sub}` has no flag {flag}"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} things checked: did the README change shape?"
    );
}
