//! The FUSE front-end: translates kernel requests into `volume` calls and back.
//!
//! No storage or crypto here: `abi` is the kernel's protocol, `filesystem` maps each
//! request to one engine call, `attr` builds the kernel's attribute structs, `errno` is the
//! only place where engine errors become errno values, `mount` mounts, `session` runs the
//! handshake and the `/dev/fuse` transport, `uring` the io_uring one. `Handler` is what
//! the transports drive: `NanoFs`, or the do-nothing floor of `examples/fuse_floor.rs`.

pub mod abi;
pub mod attr;
pub mod errno;
mod filesystem;
mod handler;
pub mod mount;
mod session;
mod uring;

pub use filesystem::{setattr_args, wanted_flags, NanoFs, MAX_WRITE};
pub use handler::{Handler, Negotiated, Reply};
pub use mount::MountConfig;
pub use session::{mount, mount_handler, Running, Session};
pub use uring::kernel_enabled as uring_enabled;
