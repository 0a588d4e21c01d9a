//! Live streams' media plane (docs/live.md): a selective forwarding unit over WebRTC, fed
//! by WHIP publishers and read by WHEP viewers.
//!
//! The WebRTC stack is `str0m` (ICE, DTLS-SRTP, RTP/RTCP, NACK and congestion control),
//! driven sans-IO by one event loop that owns every session and the UDP sockets. A
//! publisher's frames go to each viewer as they are, never transcoded. Who may publish or
//! watch is decided before a session reaches the loop (`crate::http::live`); the loop only
//! enforces the limits and the one-publisher rule, which need its state.

pub mod cmaf;
pub mod hls;
mod hub;
pub mod media;
pub mod packager;
pub mod record;
pub mod rtmp;
mod sfu;
mod simulcast;

pub use hub::{Hub, HubConfig};
pub use media::{Codec, MediaFrame};
pub use sfu::{Sfu, SfuConfig};

use std::fmt;

/// A WebRTC session: random, unguessable, so its URL is the capability to end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 32 {
            return Err(());
        }
        u128::from_str_radix(s, 16).map(SessionId).map_err(|_| ())
    }
}

impl SessionId {
    fn random() -> Self {
        let mut b = [0u8; 16];
        crate::crypto::keys::random_bytes(&mut b);
        Self(u128::from_le_bytes(b))
    }
}

/// The stream a session belongs to, as the loop needs it.
#[derive(Debug, Clone)]
pub struct StreamRef {
    /// Its name.
    pub name: String,
    /// The owning gallery, told of the stream's start, viewers and end.
    pub gallery: Option<String>,
    /// Record it into `dir`.
    pub record: bool,
    /// Volume path of its directory.
    pub dir: String,
}

/// Why the loop refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The offer could not be read or answered.
    #[error("the SDP offer cannot be used: {0}")]
    BadOffer(String),
    /// Another publisher sends to the stream.
    #[error("the stream {0} already has a publisher")]
    Busy(String),
    /// `max_concurrent_streams` live streams exist.
    #[error("{0} live streams are published already (max_concurrent_streams); try again later")]
    TooManyStreams(u32),
    /// `max_viewers_per_stream` watch the stream.
    #[error("the stream has {0} viewers already (max_viewers_per_stream); try again later")]
    TooManyViewers(u32),
    /// Nobody publishes to the stream.
    #[error("the stream {0} is not live")]
    NotLive(String),
    /// WebRTC is off or its sockets could not be opened.
    #[error("WebRTC is not available: {0}")]
    Unavailable(String),
}

/// A live stream as the loop sees it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct LiveStatus {
    /// Whether a publisher is connected now (else the stream waits out its grace period).
    pub publishing: bool,
    /// WebRTC viewers connected.
    pub viewers: u32,
    /// Video and audio codecs the publisher sends (`video/H264`, `audio/opus`).
    pub codecs: Vec<String>,
    /// Simulcast layers the publisher sends (empty: one layer).
    pub layers: Vec<String>,
}
