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
    /// File data, in consecutive pieces as the engine holds them (no copy before the
    /// transport's own).
    Data(Vec<Plain>),
    /// An errno.
    Err(i32),
    /// No reply at all (forget).
    None,
}

/// A reply's bytes after its header.
pub enum Body<'a> {
    Bytes(&'a [u8]),
    Pieces(&'a [Plain]),
}

impl Body<'_> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Pieces(p) => p.iter().map(|p| p.len()).sum(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, piece by piece.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let (bytes, pieces) = match self {
            Self::Bytes(b) => (Some(*b), &[][..]),
            Self::Pieces(p) => (None, *p),
        };
        bytes.into_iter().chain(pieces.iter().map(|p| &p[..]))
    }
}

impl Reply {
    /// The errno and the reply's bytes; `None` for no reply.
    #[must_use]
    pub fn parts(&self) -> Option<(i32, Body<'_>)> {
        match self {
            Self::Ok(out) => Some((0, Body::Bytes(&out.0))),
            Self::Data(pieces) => Some((0, Body::Pieces(pieces))),
            Self::Err(errno) => Some((*errno, Body::Bytes(&[]))),
            Self::None => None,
        }
    }
}
