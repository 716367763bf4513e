//! `service install|uninstall|status`: `--dry-run` touches nothing; the real steps run against
//! stand-in `systemctl`/`launchctl` scripts that log their arguments.

use super::support::{healthy_config, TestEnv};

fn install_args(config: &std::path::Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        vec!["--config".into(), config.into(), "service".into()];
    args.extend(extra.iter().map(Into::into));
    args
}

#[test]
fn dry_run_touches_nothing_and_prints_the_unit() {
    let env = TestEnv::new();
    let config = healthy_config(&env);
    let before = env.tree();
    for platform in ["systemd", "launchd"] {
        let run = env.run(install_args(
            &config,
            &["install", "--dry-run", "--platform", platform],
        ));
        run.expect_code(0);
        let (path, text) = run.written_file();
        run.check(!path.exists(), "the file is not written");
        run.check(
            text.contains(&config.display().to_string()),
            "names the config",
        );
        run.check(
            run.stdout.contains("# would run: "),
            "lists the commands it would run",
        );
        if platform == "systemd" {
            run.check(text.contains("\nExecStart="), "prints the unit");
            run.check(
                run.stdout
                    .contains("# would run: systemctl --user enable --now captiond.service"),
                "enables it",
            );
        }
        let run = env.run(install_args(
            &config,
            &["uninstall", "--dry-run", "--platform", platform],
        ));
        run.expect_code(0);
        run.check(
            run.stdout.contains("# would remove "),
            "says what it removes",
        );
    }
    assert_eq!(env.tree(), before, "--dry-run created or removed files");
}

#[test]
fn install_status_uninstall_with_systemctl() {
    let mut env = TestEnv::new();
    env.fake_tool(
        "systemctl",
        r#"case "$2" in is-enabled) echo enabled;; is-active) echo active;; esac; exit 0"#,
    );
    let config = healthy_config(&env);
    // A library that is missing (an unmounted share): never created by install.
    let nas = env.root().join("nas/photos");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[model]",
        &format!("[[library]]\npath = {nas:?}\n\n[model]"),
    );
    std::fs::write(&config, text).unwrap();

    let dry = env.run(install_args(
        &config,
        &["install", "--dry-run", "--platform", "systemd"],
    ));
    let (_, expected) = dry.written_file();
    let run = env.run(install_args(&config, &["install", "--platform", "systemd"]));
    run.expect_code(0);
    let unit = env.config_home().join("systemd/user/captiond.service");
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), expected);
    let calls = env.fake_calls();
    run.check(
        calls.contains("systemctl --user daemon-reload\n")
            && calls.contains("systemctl --user enable --now captiond.service\n"),
        format_args!("systemctl calls:\n{calls}"),
    );
    run.check(
        env.root().join("catalog").is_dir(),
        "the catalog folder exists",
    );
    run.check(env.hf_home().is_dir(), "the model cache exists");
    run.check(!nas.exists(), "a missing library root is not created");

    let run = env.run(install_args(&config, &["status", "--platform", "systemd"]));
    run.expect_code(0);
    run.check(run.stdout.contains("installed: yes"), "installed");
    run.check(run.stdout.contains("enabled:   yes (enabled)"), "enabled");
    run.check(run.stdout.contains("active:    yes (active)"), "active");

    let run = env.run(install_args(
        &config,
        &["uninstall", "--platform", "systemd"],
    ));
    run.expect_code(0);
    run.check(!unit.exists(), "the unit file is gone");
    run.check(
        env.fake_calls()
            .contains("systemctl --user disable --now captiond.service\n"),
        "disabled and stopped",
    );
    run.check(
        env.root().join("catalog").is_dir(),
        "the catalog folder stays",
    );
}

#[test]
fn no_user_bus_is_explained() {
    let mut env = TestEnv::new();
    env.fake_tool(
        "systemctl",
        r#"echo "Failed to connect to bus: No medium found" >&2; exit 1"#,
    );
    let config = healthy_config(&env);
    let run = env.run(install_args(&config, &["status", "--platform", "systemd"]));
    run.expect_code(0);
    run.check(run.stdout.contains("installed: no"), "not installed");
    run.check(
        run.stdout
            .contains("enabled:   unknown: the systemd user manager is not reachable"),
        "says why it cannot tell",
    );
    let run = env.run(install_args(&config, &["install", "--platform", "systemd"]));
    run.expect_code(1);
    run.check(
        run.stderr.contains("not reachable") && run.stderr.contains("enable-linger"),
        "names the cause and a way out",
    );
}

#[test]
fn launchd_install_bootstraps_the_agent() {
    let mut env = TestEnv::new();
    env.fake_tool(
        "launchctl",
        r#"case "$1" in
  print) printf 'gui/501/org.captiond.captiond = {\n\tstate = running\n\tpid = 77\n}\n';;
  print-disabled) printf 'disabled services = {\n}\n';;
esac
exit 0"#,
    );
    let config = healthy_config(&env);
    let run = env.run(install_args(&config, &["install", "--platform", "launchd"]));
    run.expect_code(0);
    let plist = env
        .home()
        .join("Library/LaunchAgents/org.captiond.captiond.plist");
    run.check(plist.is_file(), "the plist is written");
    run.check(
        env.home().join("Library/Logs/captiond").is_dir(),
        "log folder",
    );
    let calls = env.fake_calls();
    let line = "launchctl bootstrap gui/";
    run.check(
        calls
            .lines()
            .any(|l| l.starts_with(line) && l.ends_with(&*plist.to_string_lossy())),
        format_args!("launchctl calls:\n{calls}"),
    );
    let run = env.run(install_args(&config, &["status", "--platform", "launchd"]));
    run.expect_code(0);
    run.check(
        run.stdout.contains("active:    yes (running, pid 77)"),
        "running",
    );
    let run = env.run(install_args(
        &config,
        &["uninstall", "--platform", "launchd"],
    ));
    run.expect_code(0);
    run.check(!plist.exists(), "the plist is gone");
    run.check(
        env.fake_calls().contains("launchctl bootout gui/"),
        "booted out",
    );
}
