//! The FUSE front-end: translates kernel requests into `volume` calls and back.
//!
//! No storage or crypto here: `filesystem` maps each request to one engine call,
//! `attr` builds the kernel's attribute structs, `errno` is the only place where engine
//! errors become errno values, `mount` assembles options and runs the session.

mod attr;
pub mod errno;
mod filesystem;
pub mod mount;

pub use filesystem::NanoFs;
