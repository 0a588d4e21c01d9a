//! The daemon's control socket: `VOLUME/control.sock`, owner-only, one JSON line per
//! request and per answer.
//!
//! While a volume is mounted, its daemon holds the database; commands that read or change
//! the volume (`stats`, `umount`, later `gc`, `snapshot`, ...) ask the daemon here instead
//! of opening the database a second time.

use crate::gallery::Galleries;
use crate::stream::jobs::Jobs;
use crate::volume::{
    AuditEvent, CheckReport, Credential, GcReport, PathStats, Permission, RekeyReport, RotateReport, SnapshotInfo,
    Stats, TokenInfo, Volume,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// File name of the socket inside the volume directory.
pub const SOCKET: &str = "control.sock";

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who is serving the volume.
    Status,
    /// Space figures.
    Stats,
    /// Collect garbage now.
    Gc,
    /// Store a metadata backup in the object store.
    MetaBackup,
    /// Check the volume.
    Check {
        /// Also read and verify every chunk.
        read_data: bool,
        /// Fix what can be derived.
        repair: bool,
    },
    /// Take a snapshot of a directory (the whole tree: `/`).
    SnapshotCreate {
        /// Its name under `/.snapshots`.
        name: String,
        /// Volume path of the directory.
        path: String,
    },
    /// List the snapshots.
    SnapshotList,
    /// Apply the snapshot schedules' counts (answers `Json` with a `ScheduleReport`).
    SnapshotForget {
        /// Only report.
        dry_run: bool,
    },
    /// Delete a snapshot.
    SnapshotDelete {
        /// Its name.
        name: String,
    },
    /// Start a new key epoch; the credential must open a slot (and its passphrase slot is
    /// re-wrapped). The socket is root-only, like the volume directory.
    RotateKey {
        /// What unlocks.
        credential: WireCredential,
    },
    /// Re-seal the chunks of older key epochs.
    Rekey,
    /// Fingerprint of a file or tree (volume path).
    Fingerprint {
        /// Volume path.
        path: String,
    },
    /// Space figures of a directory tree (volume path).
    PathStats {
        /// Volume path.
        path: String,
    },
    /// Administer users and galleries.
    Admin(crate::gallery::admin::AdminOp),
    /// Queue a video for packaging into its adaptive ladder; answers with the job.
    Package {
        /// Volume path of the video.
        path: String,
        /// Heights; `None`: `[media.streaming] ladder`.
        ladder: Option<Vec<u32>>,
    },
    /// The packaging job of a video, once it has finished or `wait_ms` have passed.
    MediaJob {
        /// The video's inode (`Job::source`).
        source: u64,
        /// How long to wait for it to finish.
        wait_ms: u64,
    },
    /// Every packaging job.
    MediaJobs,
    /// Create an HTTP token.
    TokenCreate {
        /// Label.
        name: String,
        /// Path prefix.
        prefix: String,
        /// Allowed operations.
        allow: Vec<Permission>,
        /// Lifetime in seconds.
        ttl_secs: i64,
        /// The user it acts as in galleries.
        #[serde(default)]
        user: Option<String>,
        /// Where it may be used from.
        #[serde(default)]
        bindings: crate::volume::Bindings,
    },
    /// List HTTP tokens.
    TokenList,
    /// Revoke an HTTP token.
    TokenRevoke {
        /// Its id.
        id: String,
    },
    /// Put a directory under legal hold (answers `Json` with the `Hold`).
    HoldSet {
        /// Volume path of the directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// Lift a legal hold.
    HoldRelease {
        /// Volume path of the directory.
        path: String,
    },
    /// Every legal hold (answers `Json`).
    HoldList,
    /// What is in the trash (answers `Json` with `TrashItem`s).
    TrashList,
    /// Put back what was deleted from a path (answers `Json` with the `TrashItem`s).
    TrashRestore {
        /// The path it had.
        path: String,
        /// One entry by its id.
        id: Option<u64>,
        /// Restore it here instead.
        to: Option<String>,
    },
    /// Delete for good what was trashed before a time (answers `Json` with `TrashEmptied`).
    TrashEmpty {
        /// Unix seconds; `None`: everything.
        before: Option<i64>,
    },
    /// Read `nanofs.toml` again (answers `Json` with a `config::Reload`).
    ConfigReload,
    /// Walk the audit trail's chain (answers `Json` with an `AuditVerdict`).
    AuditVerify,
    /// The audit records from `since` (Unix milliseconds) on (answers `Json`).
    AuditExport {
        /// Earliest time.
        since: Option<i64>,
    },
    /// Append an act of the administrator to the audit trail.
    Audit {
        /// The act.
        event: AuditEvent,
    },
    /// Clone a file or tree (volume paths).
    Clone {
        /// What to copy.
        src: String,
        /// The new path.
        dst: String,
    },
}

/// A credential as sent to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireCredential {
    /// Passphrase bytes, hex.
    Passphrase {
        /// Hex of the bytes.
        hex: String,
    },
    /// An identity file's text.
    Identity {
        /// The text.
        text: String,
    },
}

impl From<&Credential> for WireCredential {
    fn from(c: &Credential) -> Self {
        match c {
            Credential::Passphrase(p) => WireCredential::Passphrase { hex: crate::ids::hex(p) },
            Credential::Identity(_) => {
                WireCredential::Identity { text: c.identity_text().expect("an identity").to_string() }
            }
        }
    }
}

impl WireCredential {
    fn credential(&self) -> crate::volume::Result<Credential> {
        let bad = |m: &str| crate::volume::Error::NotAVolume(format!("bad credential: {m}"));
        Ok(match self {
            WireCredential::Passphrase { hex } => {
                Credential::Passphrase(zeroize::Zeroizing::new(crate::ids::unhex(hex).ok_or_else(|| bad("not hex"))?))
            }
            WireCredential::Identity { text } => Credential::identity_from_text(text)?,
        })
    }
}

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `Status`.
    Status {
        /// Daemon process id.
        pid: u32,
        /// Where the volume is mounted.
        mountpoint: PathBuf,
    },
    /// Answer to `Stats`.
    Stats(Stats),
    /// Answer to `Gc`.
    Gc(GcReport),
    /// Answer to `Check`.
    Check(CheckReport),
    /// Answer to `SnapshotCreate`.
    Snapshot(SnapshotInfo),
    /// Answer to `SnapshotList` (a struct variant: an internally tagged enum cannot hold a
    /// bare sequence).
    Snapshots {
        /// Oldest first.
        snapshots: Vec<SnapshotInfo>,
    },
    /// Answer to `Fingerprint`.
    Fingerprint {
        /// Hex BLAKE2b-256.
        blake2b: String,
    },
    /// Answer to `PathStats`.
    PathStats(PathStats),
    /// Answer to `TokenCreate`: the token string, shown once.
    Token {
        /// What it allows.
        info: TokenInfo,
        /// The bearer token.
        token: String,
    },
    /// Answer to `TokenList`.
    Tokens {
        /// Oldest first.
        tokens: Vec<TokenInfo>,
    },
    /// Answer to `RotateKey`.
    Rotated(RotateReport),
    /// Answer to `Rekey`.
    Rekeyed(RekeyReport),
    /// Answer to `Admin`.
    Json {
        /// What the operation returns.
        value: serde_json::Value,
    },
    /// A request that returns nothing succeeded.
    Done,
    /// The request failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Path of the control socket of the volume in `dir`.
#[must_use]
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Sends `req` to the daemon serving `dir`; `None` when no daemon answers.
pub fn ask(dir: &Path, req: &Request) -> Option<Response> {
    let mut s = UnixStream::connect(socket_path(dir)).ok()?;
    // Garbage collection of a large volume takes a while; a dead daemon answers at once.
    s.set_read_timeout(Some(Duration::from_secs(3600))).ok()?;
    let mut line = serde_json::to_string(req).ok()?;
    line.push('\n');
    s.write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

/// Listens on the control socket of `vol` in a background thread. A stale socket left by
/// a killed daemon is replaced; a live one means the volume is in use.
pub fn serve(galleries: Arc<Galleries>, jobs: Arc<Jobs>, mountpoint: PathBuf) -> std::io::Result<()> {
    let path = socket_path(galleries.volume().dir());
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another daemon serves this volume"));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let (galleries, jobs) = (galleries.clone(), jobs.clone());
            let mountpoint = mountpoint.clone();
            std::thread::spawn(move || handle(&galleries, &jobs, &mountpoint, conn));
        }
    })?;
    Ok(())
}

fn handle(galleries: &Galleries, jobs: &Jobs, mountpoint: &Path, conn: UnixStream) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        // The mount's kernel caches drop the names a command changes (`Volume::foreign`).
        Ok(req) => {
            let vol = galleries.volume();
            vol.foreign(|| answer(vol, galleries, jobs, mountpoint, req))
                .unwrap_or_else(|e| Response::Error { message: e.to_string() })
        }
        Err(e) => Response::Error { message: format!("bad request: {e}") },
    };
    let mut out = serde_json::to_string(&response).expect("responses serialise");
    out.push('\n');
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
}

/// Answers `req`; an error of the engine or of the galleries becomes the message sent back.
fn answer(
    vol: &Volume,
    galleries: &Galleries,
    jobs: &Jobs,
    mountpoint: &Path,
    req: Request,
) -> Result<Response, Box<dyn std::error::Error>> {
    Ok(match req {
        Request::Status => Response::Status { pid: std::process::id(), mountpoint: mountpoint.to_path_buf() },
        Request::Stats => {
            let mut stats = vol.stats()?;
            stats.areas = vol.area_stats()?;
            Response::Stats(stats)
        }
        Request::Gc => Response::Gc(vol.gc()?),
        Request::MetaBackup => Response::Json { value: serde_json::to_value(vol.meta_backup()?)? },
        Request::Check { read_data, repair } => {
            let mut report = vol.check(read_data, repair, &|_, _| {})?;
            galleries.check(repair, &mut report)?;
            Response::Check(report)
        }
        Request::SnapshotForget { dry_run } => {
            Response::Json { value: serde_json::to_value(vol.snapshot_schedules(false, dry_run)?)? }
        }
        Request::SnapshotCreate { name, path } => Response::Snapshot(vol.snapshot_create(&name, &path)?),
        Request::SnapshotList => Response::Snapshots { snapshots: vol.snapshot_list()? },
        Request::SnapshotDelete { name } => {
            vol.snapshot_delete(&name)?;
            Response::Done
        }
        Request::RotateKey { credential } => Response::Rotated(vol.rotate_key(&credential.credential()?)?),
        Request::Rekey => Response::Rekeyed(vol.rekey(&|_, _| {})?),
        Request::Fingerprint { path } => {
            Response::Fingerprint { blake2b: crate::ids::hex(&vol.fingerprint(vol.resolve(&path)?)?) }
        }
        Request::PathStats { path } => Response::PathStats(vol.path_stats(vol.resolve(&path)?)?),
        Request::TokenCreate { name, prefix, allow, ttl_secs, user, bindings } => {
            if let Some(u) = &user {
                galleries.require_user(u)?;
            }
            let (info, token) = vol.token_create(&name, &prefix, &allow, ttl_secs, user.as_deref(), &bindings)?;
            Response::Token { info, token }
        }
        Request::Admin(op) => Response::Json { value: galleries.admin(&op)? },
        Request::Package { path, ladder } => {
            Response::Json { value: serde_json::to_value(jobs.queue(&path, ladder, false)?)? }
        }
        Request::MediaJob { source, wait_ms } => {
            let job = jobs
                .wait_timeout(crate::ids::Ino(source), Duration::from_millis(wait_ms.min(60_000)))
                .ok_or_else(|| format!("no packaging job for inode {source}"))?;
            Response::Json { value: serde_json::to_value(job)? }
        }
        Request::MediaJobs => Response::Json { value: serde_json::to_value(jobs.list())? },
        Request::TokenList => Response::Tokens { tokens: vol.token_list()? },
        Request::TokenRevoke { id } => {
            vol.token_revoke(&id)?;
            Response::Done
        }
        Request::HoldSet { path, reason } => {
            Response::Json { value: serde_json::to_value(vol.hold_set(&path, &reason)?)? }
        }
        Request::HoldRelease { path } => {
            vol.hold_release(&path)?;
            Response::Done
        }
        Request::HoldList => Response::Json { value: serde_json::to_value(vol.hold_list()?)? },
        Request::TrashList => Response::Json { value: serde_json::to_value(vol.trash_list()?)? },
        Request::TrashRestore { path, id, to } => {
            Response::Json { value: serde_json::to_value(vol.trash_restore(&path, id, to.as_deref())?)? }
        }
        Request::TrashEmpty { before } => Response::Json { value: serde_json::to_value(vol.trash_empty(before)?)? },
        Request::ConfigReload => Response::Json { value: serde_json::to_value(vol.reload_config()?)? },
        Request::AuditVerify => Response::Json { value: serde_json::to_value(vol.audit_verify()?)? },
        Request::AuditExport { since } => Response::Json { value: serde_json::to_value(vol.audit_records(since)?)? },
        Request::Audit { event } => {
            vol.audit(event)?;
            Response::Done
        }
        Request::Clone { src, dst } => {
            vol.clone_path(&src, &dst)?;
            Response::Done
        }
    })
}

/// Removes the socket of `dir` (clean shutdown).
pub fn remove_socket(dir: &Path) {
    let _ = std::fs::remove_file(socket_path(dir));
}
