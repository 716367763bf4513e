//! Which kind of filesystem a library root lives on, to choose between events and polling.
//!
//! Input: a path. Output: [`FsKind`]. inotify and FSEvents only see changes made through this
//! kernel, so a share changed by another host (NFS, SMB/CIFS, sshfs, …) never reports them;
//! such roots are polled ([`should_poll`]). Linux reads `statfs.f_type` magic numbers (and, for
//! FUSE, the subtype from `/proc/self/mountinfo`); macOS and FreeBSD read `statfs.f_fstypename`.

use std::io;
use std::path::Path;

/// Whether a library is watched with inotify/FSEvents or polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Poll network and FUSE filesystems, watch local ones.
    Auto,
    Always,
    Never,
}

/// Where a root's files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// A disk of this machine (ext4, btrfs, xfs, apfs, tmpfs, overlay, …).
    Local,
    /// A network filesystem, named like mount(8) names it: "nfs", "smb2", "cifs", "9p",
    /// "fuse.sshfs", "smbfs", …
    Network(&'static str),
    /// FUSE of an unknown kind (could be local, could be remote).
    Fuse,
}

/// Whether a root on `kind` is polled under the library's `poll` setting.
pub fn should_poll(kind: FsKind, mode: PollMode) -> bool {
    match mode {
        PollMode::Always => true,
        PollMode::Never => false,
        PollMode::Auto => !matches!(kind, FsKind::Local),
    }
}

/// The kind of filesystem holding `path` (which must exist).
pub fn filesystem_kind(path: &Path) -> io::Result<FsKind> {
    imp::filesystem_kind(path)
}

/// A short name of the filesystem type holding `path` ("0xef53" on Linux, "apfs" on macOS),
/// compared over time to notice that a mount point lost its mount.
pub(crate) fn fs_type_id(path: &Path) -> io::Result<String> {
    imp::fs_type_id(path)
}

/// Linux `statfs.f_type` of the network and cluster filesystems.
pub fn kind_from_magic(magic: u32) -> FsKind {
    match magic {
        0x6969 => FsKind::Network("nfs"),
        0x517B => FsKind::Network("smb"),
        0xFE53_4D42 => FsKind::Network("smb2"),
        0xFF53_4D42 => FsKind::Network("cifs"),
        0x5346_414F | 0x6B41_4653 => FsKind::Network("afs"),
        0x0102_1997 => FsKind::Network("9p"),
        0x00C3_6400 => FsKind::Network("ceph"),
        0x7375_7245 => FsKind::Network("coda"),
        0x564C => FsKind::Network("ncp"),
        0x0116_1970 => FsKind::Network("gfs2"),
        0x7461_636F => FsKind::Network("ocfs2"),
        0x0BD0_0BD0 => FsKind::Network("lustre"),
        0x1366_1366 => FsKind::Network("orangefs"),
        0x4750_4653 => FsKind::Network("gpfs"),
        0x786F_4256 => FsKind::Network("vboxsf"),
        0x7C7C_6673 => FsKind::Network("prl_fs"),
        0x6573_5546 => FsKind::Fuse,
        _ => FsKind::Local,
    }
}

/// A FUSE subtype from mountinfo (`fuse.sshfs`, `fuseblk`, …).
pub fn kind_from_fuse_type(fstype: &str) -> FsKind {
    const NETWORK: &[&str] = &[
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.goofys",
        "fuse.juicefs",
        "fuse.glusterfs",
        "fuse.smbnetfs",
        "fuse.curlftpfs",
        "fuse.davfs",
        "fuse.gvfsd-fuse",
        "fuse.onedriver",
        "fuse.seaweedfs",
        "virtiofs",
    ];
    match NETWORK.iter().find(|n| **n == fstype) {
        Some(name) => FsKind::Network(name),
        // ntfs-3g, exfat-fuse: a local disk, all changes pass through this kernel.
        None if fstype == "fuseblk" => FsKind::Local,
        None => FsKind::Fuse,
    }
}

/// The filesystem type of the mount holding `path` (absolute, canonical), from the text of
/// `/proc/self/mountinfo`: the longest mount point containing it, the last such line winning.
pub fn mountinfo_fstype<'a>(mountinfo: &'a str, path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let (Some(point), Some(fstype)) = (left.split(' ').nth(4), right.split(' ').next()) else {
            continue;
        };
        let point = unescape_mount_point(point);
        if path.starts_with(&point) {
            let depth = Path::new(&point).components().count();
            if best.is_none_or(|(d, _)| depth >= d) {
                best = Some((depth, fstype));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// mountinfo writes space, tab, newline and backslash in mount points as `\040`-style octal.
fn unescape_mount_point(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |k: usize| u32::from(bytes[i + k] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn statfs_magic(path: &Path) -> io::Result<u32> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: statfs fills the zeroed struct; `c` outlives the call.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // f_type is a signed word of varying width; the magic is its low 32 bits.
        #[allow(clippy::unnecessary_cast)]
        Ok(st.f_type as u32)
    }

    pub fn filesystem_kind(path: &Path) -> io::Result<FsKind> {
        let kind = kind_from_magic(statfs_magic(path)?);
        if kind != FsKind::Fuse {
            return Ok(kind);
        }
        let canonical = std::fs::canonicalize(path)?;
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Ok(FsKind::Fuse);
        };
        Ok(mountinfo_fstype(&mountinfo, &canonical)
            .map(kind_from_fuse_type)
            .unwrap_or(FsKind::Fuse))
    }

    pub fn fs_type_id(path: &Path) -> io::Result<String> {
        Ok(format!("{:#x}", statfs_magic(path)?))
    }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
mod imp {
    use super::*;
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;

    fn fstypename(path: &Path) -> io::Result<String> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: statfs fills the zeroed struct; f_fstypename is NUL-terminated.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let name = unsafe { CStr::from_ptr(st.f_fstypename.as_ptr()) };
        Ok(name.to_string_lossy().into_owned())
    }

    pub fn filesystem_kind(path: &Path) -> io::Result<FsKind> {
        Ok(match fstypename(path)?.as_str() {
            "nfs" => FsKind::Network("nfs"),
            "smbfs" => FsKind::Network("smbfs"),
            "afpfs" => FsKind::Network("afpfs"),
            "webdav" => FsKind::Network("webdav"),
            "cifs" => FsKind::Network("cifs"),
            "ftp" => FsKind::Network("ftp"),
            name if name.contains("fuse") => FsKind::Fuse,
            _ => FsKind::Local,
        })
    }

    pub fn fs_type_id(path: &Path) -> io::Result<String> {
        fstypename(path)
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
mod imp {
    use super::*;

    pub fn filesystem_kind(path: &Path) -> io::Result<FsKind> {
        std::fs::metadata(path).map(|_| FsKind::Local)
    }

    pub fn fs_type_id(path: &Path) -> io::Result<String> {
        std::fs::metadata(path).map(|_| String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_decision() {
        let nfs = FsKind::Network("nfs");
        assert!(!should_poll(FsKind::Local, PollMode::Auto));
        assert!(should_poll(nfs, PollMode::Auto));
        assert!(should_poll(FsKind::Fuse, PollMode::Auto));
        assert!(should_poll(FsKind::Local, PollMode::Always));
        assert!(!should_poll(nfs, PollMode::Never));
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(kind_from_magic(0x6969), FsKind::Network("nfs"));
        assert_eq!(kind_from_magic(0xFF53_4D42), FsKind::Network("cifs"));
        assert_eq!(kind_from_magic(0xFE53_4D42), FsKind::Network("smb2"));
        assert_eq!(kind_from_magic(0x0102_1997), FsKind::Network("9p"));
        assert_eq!(kind_from_magic(0x6573_5546), FsKind::Fuse);
        assert_eq!(kind_from_magic(0xEF53), FsKind::Local); // ext4
        assert_eq!(kind_from_magic(0x0102_1994), FsKind::Local); // tmpfs
    }

    #[test]
    fn fuse_subtype_from_mountinfo() {
        let mi = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/nas rw,nosuid shared:20 - fuse.sshfs me@nas:/photos rw,user_id=1000
41 40 0:36 / /mnt/nas/usb rw shared:21 - fuseblk /dev/sdb1 rw
42 22 0:37 / /mnt/my\\040photos rw shared:22 - fuse.mergerfs a:b rw
";
        let t = |p: &str| mountinfo_fstype(mi, Path::new(p));
        assert_eq!(t("/mnt/nas/2024/a.jpg"), Some("fuse.sshfs"));
        assert_eq!(t("/mnt/nas"), Some("fuse.sshfs"));
        assert_eq!(t("/mnt/nas/usb/x"), Some("fuseblk"));
        assert_eq!(t("/mnt/nasty"), Some("ext4"));
        assert_eq!(t("/mnt/my photos/x"), Some("fuse.mergerfs"));
        assert_eq!(
            kind_from_fuse_type("fuse.sshfs"),
            FsKind::Network("fuse.sshfs")
        );
        assert_eq!(kind_from_fuse_type("fuseblk"), FsKind::Local);
        assert_eq!(kind_from_fuse_type("fuse.mergerfs"), FsKind::Fuse);
    }

    #[test]
    fn temp_dir_is_local() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(filesystem_kind(tmp.path()).unwrap(), FsKind::Local);
        #[cfg(target_os = "linux")]
        assert!(!fs_type_id(tmp.path()).unwrap().is_empty());
        assert!(filesystem_kind(&tmp.path().join("missing")).is_err());
    }
}
