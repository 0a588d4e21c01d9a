//! What a transport needs from a file system: the `FUSE_INIT` choice and an answer per
//! request. `NanoFs` is the one nanofs serves; `examples/fuse_floor.rs` serves a do-nothing
//! one through the same transports to measure what they cost alone.

use super::abi::{Args, InHeader, Out};
use crate::volume::chunks::Plain;

/// A FUSE file system, as the transports drive it.
pub trait Handler: Send + Sync + 'static {
    /// Chooses the `FUSE_INIT` flags from those the kernel offers (`want_uring`: ask for
    /// requests over io_uring too).
    fn negotiate(&mut self, offered: u64, max_readahead: u32, want_uring: bool) -> Negotiated;
    /// Answers one request: `h` is its header, `a` its arguments.
    fn handle(&self, h: &InHeader, a: Args<'_>) -> Reply;
}

/// What was agreed with the kernel at `FUSE_INIT`.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// Flags in force (ours and the kernel's).
    pub flags: u64,
    pub max_readahead: u32,
}

/// What a request gets back.
pub enum Reply {
    /// The reply's arguments (possibly none).
    Ok(Out),
    /// File data, as the engine holds it (no copy before the transport's own).
    Data(Plain),
    /// An errno.
    Err(i32),
    /// No reply at all (forget).
    None,
}

impl Reply {
    /// The errno and the reply's arguments; `None` for no reply.
    #[must_use]
    pub fn parts(&self) -> Option<(i32, &[u8])> {
        match self {
            Self::Ok(out) => Some((0, &out.0)),
            Self::Data(plain) => Some((0, plain)),
            Self::Err(errno) => Some((*errno, &[])),
            Self::None => None,
        }
    }
}
