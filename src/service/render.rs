//! The service file's text: the compiled-in templates with what depends on the machine filled in,
//! quoted for systemd's unit syntax or escaped for the plist's XML.

use std::fmt::Write as _;

use super::*;

/// The service file for `spec`.
pub fn render(spec: &ServiceSpec) -> String {
    match spec.platform {
        Platform::Systemd => render_systemd(spec),
        Platform::Launchd => render_plist(spec),
    }
}

pub(super) fn render_systemd(spec: &ServiceSpec) -> String {
    let (template, template_name) = match spec.scope {
        Scope::User => (USER_UNIT, "systemd/captiond.service"),
        Scope::System => (SYSTEM_UNIT, "systemd/captiond-system.service"),
    };
    let mut out = String::new();
    let from = match &spec.config {
        Some(c) => format!("for the config {}", c.display()),
        None => "with the built-in defaults (no config file)".to_string(),
    };
    let _ = writeln!(
        out,
        "# Written by `captiond service install{}` {from}, from the template {template_name}.\n\
         # Install again after changing the config's database, libraries or sidecars: the writable\n\
         # folders below follow them. Logs: journalctl{} -u captiond",
        if spec.scope == Scope::System {
            " --system"
        } else {
            ""
        },
        if spec.scope == Scope::User {
            " --user"
        } else {
            ""
        },
    );
    let mut in_header = true;
    let mut wrote_paths = false;
    for line in template.lines() {
        if in_header {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            in_header = false;
            out.push('\n');
        }
        if line.starts_with("ExecStart=") {
            let words: Vec<String> = spec.argv().iter().map(|a| exec_word(a)).collect();
            let _ = writeln!(out, "ExecStart={}", words.join(" "));
        } else if line.starts_with("User=") {
            let _ = writeln!(out, "User={}", unit_value(&spec.user));
        } else if line.starts_with("Group=") {
            let _ = writeln!(out, "Group={}", unit_value(&spec.group));
        } else if line.starts_with("Environment=HF_HOME=") {
            for (k, v) in spec.environment() {
                let _ = writeln!(
                    out,
                    "Environment={}",
                    quote_word(&format!("{k}={v}"), false)
                );
            }
        } else if line.starts_with("ReadWritePaths=") || line.starts_with("# ReadWritePaths=") {
            if !wrote_paths {
                wrote_paths = true;
                for p in &spec.read_write {
                    let p = format!("-{}", p.to_string_lossy());
                    let _ = writeln!(out, "ReadWritePaths={}", quote_word(&p, false));
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub(super) fn render_plist(spec: &ServiceSpec) -> String {
    let mut out = String::new();
    let mut in_comment = false;
    for line in PLIST.lines() {
        // The template's own how-to comment is replaced by a note on where the file came from.
        if line.trim() == "<!--" {
            in_comment = true;
            let from = match &spec.config {
                Some(c) => format!("for the config {}", c.display()),
                None => "with the built-in defaults (no config file)".to_string(),
            };
            let _ = writeln!(
                out,
                "<!-- Written by `captiond service install` {}, from the template \
                 launchd/{LABEL}.plist. -->",
                xml_escape(&from)
            );
            continue;
        }
        if in_comment {
            in_comment = line.trim() != "-->";
            continue;
        }
        if spec.config.is_none() && (line.contains("{{CONFIG}}") || line.contains(">--config<")) {
            continue;
        }
        if line.contains("{{ENVIRONMENT}}") {
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            for (k, v) in spec.environment() {
                let _ = writeln!(out, "{indent}<key>{}</key>", xml_escape(&k));
                let _ = writeln!(out, "{indent}<string>{}</string>", xml_escape(&v));
            }
            continue;
        }
        let config = spec
            .config
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let line = line
            .replace("{{BINARY}}", &xml_escape(&spec.binary.to_string_lossy()))
            .replace("{{CONFIG}}", &xml_escape(&config))
            .replace("{{HOME}}", &xml_escape(&spec.home.to_string_lossy()));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// An `ExecStart=` word: `%` and `$` doubled (specifiers, variables), quoted when needed.
pub fn exec_word(s: &str) -> String {
    quote_word(s, true)
}

/// A value as systemd reads a space-separated list word: `%` doubled, and double quotes with
/// C escapes when it holds spaces, quotes, backslashes or (in command lines) `;`/`$`.
pub(super) fn quote_word(s: &str, command: bool) -> String {
    let mut body = s.replace('%', "%%");
    if command {
        body = body.replace('$', "$$");
    }
    let needs_quotes = body.is_empty()
        || body
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if !needs_quotes {
        return body;
    }
    let mut quoted = String::from("\"");
    for c in body.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A single-valued setting (`User=`): only `%` needs doubling.
pub(super) fn unit_value(s: &str) -> String {
    s.replace('%', "%%")
}

/// Text for a plist `<string>` or `<key>`: quick-xml escapes `& < > " '`.
pub(super) fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A word for a POSIX shell line (messages only; nothing is run through a shell).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
