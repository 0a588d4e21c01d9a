//! Lost writes reported as Linux reports writeback errors (`errseq_t`): writes that were
//! acknowledged and then failed to store or commit (in the background, or as part of a
//! later write) fail the next `fsync` of every handle open on the file, once per handle.
//!
//! A handle's `close` (FUSE `flush`) reports the error too, but does not count as having
//! seen it: a process that forks while writing shares its handle with the child, whose
//! exit closes it and would otherwise take the error that the writer's `fsync` must see.
//! An error no handle has seen yet is kept for the next one to open the file (or an
//! `fsync` without a handle), as a local file system keeps it in the inode's mapping.

use crate::volume::error::Error;
use std::collections::HashMap;

/// An open handle of a file, as `open_file` hands it out: each `open` gets its own, and
/// the kernel shares it between the processes that inherit the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

/// Why writes were lost, as the writer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LostWrites {
    NoSpace,
    Io,
}

impl LostWrites {
    /// The loss behind a failed store or commit; `None` for errors that lose nothing (the
    /// file is gone, the request was refused).
    pub(crate) fn of(e: &Error) -> Option<Self> {
        match e {
            Error::NoSpace => Some(Self::NoSpace),
            Error::Store(_) | Error::Io(_) | Error::CorruptMeta(_) => Some(Self::Io),
            _ => None,
        }
    }

    pub(crate) fn error(self) -> Error {
        match self {
            Self::NoSpace => Error::NoSpace,
            Self::Io => Error::Io(std::io::Error::from_raw_os_error(libc::EIO)),
        }
    }
}

/// A file's lost writes and what each open handle has seen of them.
#[derive(Default)]
pub(crate) struct WriteErrors {
    latest: Option<LostWrites>,
    /// How many losses were recorded; a handle has seen them up to the count it holds.
    seq: u64,
    /// No `fsync` and no close has reported the latest loss yet.
    unseen: bool,
    handles: HashMap<Handle, u64>,
}

impl WriteErrors {
    pub(crate) fn record(&mut self, lost: LostWrites) {
        self.latest = Some(lost);
        self.seq += 1;
        self.unseen = true;
    }

    /// A new handle sees a loss that nobody has seen yet, and none before.
    pub(crate) fn opened(&mut self, h: Handle) {
        let seen = if self.unseen { self.seq - 1 } else { self.seq };
        self.handles.insert(h, seen);
    }

    /// Forgets `h`; with no handle left, a loss reported already is forgotten too.
    pub(crate) fn closed(&mut self, h: Handle) {
        self.handles.remove(&h);
        if self.handles.is_empty() && !self.unseen {
            self.latest = None;
        }
    }

    /// For `fsync`: the loss `h` has not seen (`None`: a loss nobody has seen), after which
    /// it has.
    pub(crate) fn take_for(&mut self, h: Option<Handle>) -> Option<Error> {
        let lost = self.latest?;
        let new = match h.and_then(|h| self.handles.get_mut(&h)) {
            Some(seen) if *seen < self.seq => {
                *seen = self.seq;
                true
            }
            Some(_) => false,
            None => self.unseen,
        };
        if new {
            self.unseen = false;
        }
        new.then(|| lost.error())
    }

    /// For a close: the loss `h` has not seen, which it still sees at its next `fsync`.
    pub(crate) fn peek_for(&mut self, h: Handle) -> Option<Error> {
        let lost = self.latest?;
        let new = self.handles.get(&h).is_some_and(|seen| *seen < self.seq);
        if new {
            self.unseen = false;
        }
        new.then(|| lost.error())
    }

    /// Nothing to keep: no handle open and no loss unseen.
    pub(crate) fn idle(&self) -> bool {
        self.handles.is_empty() && !self.unseen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eio(e: Option<Error>) -> bool {
        matches!(e, Some(Error::Io(io)) if io.raw_os_error() == Some(libc::EIO))
    }

    #[test]
    fn each_handle_sees_a_loss_once_at_fsync_and_a_close_takes_it_from_nobody() {
        let mut errors = WriteErrors::default();
        let (a, b) = (Handle(1), Handle(2));
        errors.opened(a);
        errors.opened(b);
        assert!(errors.take_for(Some(a)).is_none());
        errors.record(LostWrites::Io);
        // A forked child closing the shared handle is told, and the writer still is.
        assert!(eio(errors.peek_for(a)));
        assert!(eio(errors.take_for(Some(a))));
        assert!(errors.take_for(Some(a)).is_none());
        assert!(errors.peek_for(a).is_none());
        // The other handle sees it at its own fsync.
        assert!(eio(errors.take_for(Some(b))));
        errors.record(LostWrites::NoSpace);
        assert!(matches!(errors.take_for(Some(b)), Some(Error::NoSpace)));
        errors.closed(a);
        errors.closed(b);
        // `a` never saw the second loss, but `b` did: nothing is kept.
        assert!(errors.idle());
    }

    #[test]
    fn a_loss_nobody_saw_waits_for_the_next_opener() {
        let mut errors = WriteErrors::default();
        let a = Handle(1);
        errors.opened(a);
        errors.closed(a);
        errors.record(LostWrites::Io);
        assert!(!errors.idle());
        let b = Handle(2);
        errors.opened(b);
        assert!(eio(errors.take_for(Some(b))));
        let c = Handle(3);
        errors.opened(c);
        assert!(errors.take_for(Some(c)).is_none());
        // Without a handle: only a loss nobody saw.
        errors.record(LostWrites::Io);
        assert!(eio(errors.take_for(None)));
        assert!(errors.take_for(None).is_none());
        assert!(eio(errors.take_for(Some(b))));
    }
}
