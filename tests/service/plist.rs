//! The launchd agent: rendered by `service install --dry-run --platform launchd` (so it is
//! checked on Linux too) and read back with Python's plistlib, key by key.

use std::path::Path;

use serde_json::{json, Value};

use super::support::{bin_path, repo_file, require_tool, Run, TestEnv};

/// The plist at `path` as JSON, through `python3 -c 'import plistlib…'`.
#[track_caller]
fn load_plist(env: &TestEnv, path: &Path) -> Value {
    let mut cmd = env.command("python3");
    cmd.arg("-c")
        .arg(
            "import json, plistlib, sys\n\
             with open(sys.argv[1], 'rb') as f:\n\
             \x20   print(json.dumps(plistlib.load(f)))",
        )
        .arg(path);
    let run = Run::capture(cmd, format!("python3 plistlib.load({})", path.display()));
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
}

#[test]
fn plist_parses_with_the_right_keys() {
    let Some(_) = require_tool("python3", "python3", "plist_parses_with_the_right_keys") else {
        return;
    };
    let env = TestEnv::new();
    // XML-special characters in a path must come back unchanged.
    let dir = env.root().join("a&b <c>");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "database = {:?}\n[[library]]\npath = {:?}\n",
            env.root().join("db/catalog.db"),
            env.root().join("photos")
        ),
    )
    .unwrap();
    let run = env.run_env(
        &[("HF_ENDPOINT", "https://mirror.example")],
        [
            "--config".as_ref(),
            config.as_os_str(),
            "service".as_ref(),
            "install".as_ref(),
            "--platform".as_ref(),
            "launchd".as_ref(),
            "--dry-run".as_ref(),
        ],
    );
    run.expect_code(0);
    let (path, text) = run.written_file();
    assert_eq!(
        path,
        env.home()
            .join("Library/LaunchAgents/org.captiond.captiond.plist")
    );
    run.check(
        run.stdout.contains("# would run: launchctl bootstrap gui/"),
        "loads it with launchctl bootstrap",
    );
    let file = env.write("rendered.plist", &text);
    let plist = load_plist(&env, &file);
    let home = env.home().display().to_string();
    assert_eq!(plist["Label"], json!("org.captiond.captiond"));
    assert_eq!(
        plist["ProgramArguments"],
        json!([bin_path(), "--config", config.display().to_string(), "run"])
    );
    assert_eq!(plist["RunAtLoad"], json!(true));
    assert_eq!(plist["KeepAlive"], json!({"SuccessfulExit": false}));
    assert_eq!(plist["ProcessType"], json!("Background"));
    assert_eq!(plist["LowPriorityIO"], json!(true));
    assert_eq!(plist["Nice"], json!(10));
    for key in ["StandardOutPath", "StandardErrorPath"] {
        let p = plist[key].as_str().unwrap_or_default();
        assert!(
            p.starts_with(&format!("{home}/Library/Logs/captiond/")),
            "{key} = {p:?}\n{text}"
        );
    }
    let envs = &plist["EnvironmentVariables"];
    assert_eq!(envs["RUST_LOG"], json!("captiond=info"));
    assert_eq!(envs["HF_HOME"], json!(env.hf_home().display().to_string()));
    assert_eq!(envs["HF_ENDPOINT"], json!("https://mirror.example"));
}

/// The template shipped in launchd/ is itself a valid plist.
#[test]
fn shipped_plist_template_parses() {
    let Some(_) = require_tool("python3", "python3", "shipped_plist_template_parses") else {
        return;
    };
    let env = TestEnv::new();
    let plist = load_plist(&env, &repo_file("launchd/org.captiond.captiond.plist"));
    assert_eq!(plist["Label"], json!("org.captiond.captiond"));
    assert_eq!(plist["ProgramArguments"][3], json!("run"));
}
