//! The systemd units: rendered by `service install --dry-run` for a config in a temp dir and
//! checked by `systemd-analyze verify` (which also needs ExecStart's binary to exist: the
//! rendered units run the real test binary). Any output of the verifier, warnings included,
//! fails the test.

use std::path::Path;

use super::support::{bin_path, repo_file, require_tool, Run, TestEnv};

/// Runs `systemd-analyze [--user] verify UNIT` with `unit` written as captiond.service in a
/// folder of its own; fails on a non-zero exit or any output.
#[track_caller]
fn verify(env: &TestEnv, unit: &str, user: bool) {
    let dir = env
        .root()
        .join(if user { "verify-user" } else { "verify-system" });
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("captiond.service");
    std::fs::write(&file, unit).unwrap();
    // The user manager wants a runtime dir, which a container or CI job may not have.
    let runtime = env.root().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = env.command("systemd-analyze");
    cmd.env("XDG_RUNTIME_DIR", &runtime).current_dir(&dir);
    if user {
        cmd.arg("--user");
    }
    cmd.arg("verify").arg(&file);
    let run = Run::capture(
        cmd,
        format!(
            "systemd-analyze{} verify {}",
            if user { " --user" } else { "" },
            file.display()
        ),
    );
    run.check(
        run.code() == Some(0) && run.stdout.trim().is_empty() && run.stderr.trim().is_empty(),
        format_args!("systemd-analyze verify must pass silently on:\n{unit}"),
    );
}

fn config_with_awkward_paths(env: &TestEnv) -> std::path::PathBuf {
    // A library whose path needs quoting and `%` escaping, one without sidecars, one missing.
    let lib = env.root().join("my photos 100%");
    std::fs::create_dir_all(&lib).unwrap();
    let archive = env.root().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let text = format!(
        "database = {db:?}\n\
         [[library]]\npath = {lib:?}\n\
         [[library]]\npath = {archive:?}\nsidecars = false\n\
         [[library]]\npath = {nas:?}\n",
        db = env.root().join("state/catalog.db"),
        nas = env.root().join("nas/unmounted"),
    );
    env.write("config.toml", text)
}

#[test]
fn user_unit_passes_systemd_analyze_verify() {
    let Some(_) = require_tool(
        "systemd-analyze",
        "systemd",
        "user_unit_passes_systemd_analyze_verify",
    ) else {
        return;
    };
    let env = TestEnv::new();
    let config = config_with_awkward_paths(&env);
    let run = env.run([
        "--config".as_ref(),
        config.as_os_str(),
        "service".as_ref(),
        "install".as_ref(),
        "--dry-run".as_ref(),
    ]);
    run.expect_code(0);
    let (path, unit) = run.written_file();
    assert_eq!(
        path,
        env.config_home().join("systemd/user/captiond.service")
    );
    let exec = format!(
        "\nExecStart={} --config {} run\n",
        bin_path(),
        config.display()
    );
    run.check(unit.contains(&exec), format_args!("expected {exec:?}"));
    for line in [
        format!("ReadWritePaths=-{}", env.root().join("state").display()),
        format!("ReadWritePaths=-{}", env.hf_home().display()),
        format!(
            "ReadWritePaths=\"-{}\"",
            env.root().join("my photos 100%%").display()
        ),
        format!(
            "ReadWritePaths=-{}",
            env.root().join("nas/unmounted").display()
        ),
        format!("Environment=HF_HOME={}", env.hf_home().display()),
        "NoNewPrivileges=yes".into(),
        "ProtectSystem=strict".into(),
        "PrivateTmp=yes".into(),
        "Restart=on-failure".into(),
        "Nice=10".into(),
        "CPUSchedulingPolicy=idle".into(),
        "IOSchedulingClass=idle".into(),
        "RestrictNamespaces=yes".into(),
        "SystemCallFilter=@system-service".into(),
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK".into(),
        "MemoryMax=8G".into(),
        "UMask=0022".into(),
        "WantedBy=default.target".into(),
    ] {
        run.check(
            unit.lines().any(|l| l == line),
            format_args!("expected the line {line:?}"),
        );
    }
    run.check(
        !unit.contains("archive"),
        "a library without sidecars stays read-only",
    );
    verify(&env, &unit, true);
}

#[test]
fn system_unit_passes_systemd_analyze_verify() {
    let Some(_) = require_tool(
        "systemd-analyze",
        "systemd",
        "system_unit_passes_systemd_analyze_verify",
    ) else {
        return;
    };
    let env = TestEnv::new();
    let config = config_with_awkward_paths(&env);
    let run = env.run([
        "--config".as_ref(),
        config.as_os_str(),
        "service".as_ref(),
        "install".as_ref(),
        "--system".as_ref(),
        "--user".as_ref(),
        "photos".as_ref(),
        "--dry-run".as_ref(),
    ]);
    run.expect_code(0);
    let (path, unit) = run.written_file();
    assert_eq!(path, Path::new("/etc/systemd/system/captiond.service"));
    for line in [
        "User=photos",
        "Group=photos",
        "StateDirectory=captiond",
        "CacheDirectory=captiond",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ProtectKernelLogs=yes",
        "ProtectClock=yes",
        "RestrictNamespaces=yes",
        "SystemCallFilter=@system-service",
        "MemoryMax=8G",
        "UMask=0022",
        "WantedBy=multi-user.target",
    ] {
        run.check(
            unit.lines().any(|l| l == line),
            format_args!("expected the line {line:?}"),
        );
    }
    run.check(
        !run.stdout.contains("systemctl --user"),
        "a system unit is managed with plain systemctl",
    );
    verify(&env, &unit, false);
}

/// The unit shipped in systemd/ is usable as is (ExecStart in ~/.cargo/bin).
#[test]
fn shipped_user_unit_verifies() {
    let Some(_) = require_tool("systemd-analyze", "systemd", "shipped_user_unit_verifies") else {
        return;
    };
    let env = TestEnv::new();
    let bin_dir = env.home().join(".cargo/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin_path(), bin_dir.join("captiond")).unwrap();
    let unit = std::fs::read_to_string(repo_file("systemd/captiond.service")).unwrap();
    verify(&env, &unit, true);
}

#[test]
fn system_install_needs_a_config_naming_the_catalog() {
    let env = TestEnv::new();
    let run = env.run(["service", "install", "--system", "--dry-run"]);
    run.expect_code(1);
    run.check(
        run.stderr.contains("--config"),
        "the error says what to pass",
    );
    let config = env.write("config.toml", "[[library]]\npath = \"/photos\"\n");
    let run = env.run([
        "--config".as_ref(),
        config.as_os_str(),
        "service".as_ref(),
        "install".as_ref(),
        "--system".as_ref(),
        "--dry-run".as_ref(),
    ]);
    run.expect_code(1);
    run.check(run.stderr.contains("database"), "the error names the key");
    // --user only means something with --system: a usage error.
    env.run(["service", "install", "--user", "x", "--dry-run"])
        .expect_code(2);
}
