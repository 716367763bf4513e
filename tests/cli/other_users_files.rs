//! captiond running as a user who may write into a shared folder (setgid, group-writable) but not
//! to another person's files in it: it never replaces them through the folder's permission, so
//! no file changes owner or content behind its owner's back. Needs root to set the scene and a
//! second user (`nobody`, as CI has); skipped loudly elsewhere.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::support::{image, model, Run, TestEnv};

const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `captiond ARGS…` as `nobody` (group `nogroup` only).
fn run_as_nobody(env: &TestEnv, args: &[&str]) -> Run {
    let mut cmd = env.command("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        super::support::BIN,
    ]);
    Run::captiond(cmd, &[], args)
}

#[test]
fn another_users_sidecar_and_original_are_never_replaced() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0
        || std::process::Command::new("setpriv")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("SKIPPED: needs root and setpriv to play a second user");
        return;
    }
    let env = TestEnv::new();
    chmod(env.root(), 0o755);
    for sub in ["home", "config", "data", "cache", "hf", "work"] {
        chown(&env.root().join(sub), NOBODY, NOBODY);
    }
    // A shared folder: root's, group `nogroup`, setgid and group-writable.
    let lib = env.root().join("shared");
    std::fs::create_dir_all(&lib).unwrap();
    chown(&lib, 0, NOBODY);
    chmod(&lib, 0o2775);
    let photo = lib.join("p.jpg");
    std::fs::copy(image("photo_120x90.jpg"), &photo).unwrap();
    chmod(&photo, 0o644);
    let db_dir = env.root().join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let config = env.write(
        "config.toml",
        format!(
            "database = \"{}\"\n[[library]]\npath = \"{}\"\nembed = true\n[model]\ndir = \"{}\"\ntasks = [\"<MORE_DETAILED_CAPTION>\", \"<OD>\"]\nbeams = 1\nmax_new_tokens = 24\n[daemon]\nsettle_ms = 0\n",
            db_dir.join("catalog.db").display(),
            lib.display(),
            model("tiny-a").display()
        ),
    );
    let config = config.to_str().unwrap().to_string();

    // Root captions the photo: the sidecar and the embedded XMP are root's.
    let first = env.run(["--config", &config, "run", "--once"]);
    first.expect_code(0);
    let sidecar = lib.join("p.jpg.xmp");
    first.check(sidecar.exists(), "a sidecar was written");
    chmod(&sidecar, 0o644);
    let sidecar_before = std::fs::read(&sidecar).unwrap();
    let photo_before = std::fs::read(&photo).unwrap();
    // The catalog is the service user's.
    for entry in std::fs::read_dir(&db_dir).unwrap() {
        chown(&entry.unwrap().path(), NOBODY, NOBODY);
    }
    chown(&db_dir, NOBODY, NOBODY);

    // `nobody` regenerates with another keyword parent: every file of ours would change.
    let config2 = env.write(
        "config2.toml",
        std::fs::read_to_string(&config).unwrap() + "[sidecar]\nkeyword_parent = \"Machine\"\n",
    );
    chmod(&config2, 0o644);
    chmod(Path::new(&config), 0o644);
    let run = run_as_nobody(
        &env,
        &["--config", config2.to_str().unwrap(), "sidecars", "rewrite"],
    );
    run.expect_code(0);
    for (path, before) in [(&sidecar, &sidecar_before), (&photo, &photo_before)] {
        let meta = std::fs::metadata(path).unwrap();
        run.check(
            meta.uid() == 0,
            format_args!("{} changed owner", path.display()),
        );
        run.check(
            std::fs::read(path).unwrap() == *before,
            format_args!("{} was replaced", path.display()),
        );
    }
    run.check(
        run.stdout.contains("not writable") || run.stderr.contains("not writable"),
        "the skip is reported",
    );
}
