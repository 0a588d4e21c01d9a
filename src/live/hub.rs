//! Live streams past the forwarding loop: each stream being published gets a packager
//! whose CMAF parts its HTTP viewers read (`hls::Output`), whatever ingest feeds it.

use super::hls::Output;
use super::media::MediaFrame;
use super::packager::{Emit, Packager};
use super::record::Recorder;
use super::StreamRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames queued for one stream's packager before the ingest waits (about 10 s of video
/// and audio).
const QUEUE: usize = 1024;

/// Settings of the packaging.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Package for HLS and DASH at all.
    pub enabled: bool,
    /// Longest part.
    pub part_target: Duration,
    /// Shortest segment (they start on keyframes).
    pub segment_target: Duration,
}

impl HubConfig {
    /// The settings of `[media.streaming]`.
    #[must_use]
    pub fn from_config(st: &crate::config::Streaming) -> Self {
        Self {
            enabled: st.enable_hls || st.enable_dash,
            part_target: Duration::from_millis(500),
            segment_target: Duration::from_secs(u64::from(st.segment_seconds)),
        }
    }
}

/// The packaged live streams.
pub struct Hub {
    config: HubConfig,
    outputs: Mutex<HashMap<String, Arc<Output>>>,
    /// Where recordings go (`None`: nothing is recorded).
    vol: Option<Arc<crate::volume::Volume>>,
}

impl Hub {
    /// A hub packaging with `config`, recording into `vol`.
    #[must_use]
    pub fn new(config: HubConfig, vol: Option<Arc<crate::volume::Volume>>) -> Arc<Self> {
        if let Some(v) = &vol {
            super::record::register(v);
        }
        Arc::new(Self { config, outputs: Mutex::default(), vol })
    }

    /// The keyframe interval a packaged stream needs from its publisher.
    #[must_use]
    pub fn segment_target(&self) -> Duration {
        self.config.segment_target
    }

    /// A stream starts: returns where its frames go (`None`: nothing packages). The
    /// packaging ends when the sender is dropped; its output then says the stream ended
    /// and stays readable until the stream starts again.
    pub fn begin(&self, stream: &StreamRef) -> Option<mpsc::Sender<MediaFrame>> {
        let record = stream.record && self.vol.is_some();
        if !self.config.enabled && !record {
            return None;
        }
        let out = Output::new(self.config.part_target, self.config.segment_target);
        self.outputs.lock().expect("outputs").insert(stream.name.clone(), out.clone());
        let (tx, mut rx) = mpsc::channel::<MediaFrame>(QUEUE);
        let mut packager = Packager::new(self.config.part_target, self.config.segment_target);
        let (name, dir, vol) = (stream.name.clone(), stream.dir.clone(), self.vol.clone().filter(|_| record));
        tokio::spawn(async move {
            let recorder = match vol {
                Some(vol) => {
                    let n = name.clone();
                    match tokio::task::spawn_blocking(move || Recorder::start(vol, &n, dir)).await {
                        Ok(Ok(r)) => Some(r),
                        Ok(Err(e)) => {
                            tracing::error!(stream = %name, error = %e, "cannot record the stream");
                            None
                        }
                        Err(_) => None,
                    }
                }
                None => None,
            };
            let emit = |e: Emit| {
                if let (Some(r), Emit::Init { bytes, .. } | Emit::Part { bytes, .. }) = (&recorder, &e) {
                    r.write(bytes.clone().into());
                }
                out.apply(e);
            };
            while let Some(f) = rx.recv().await {
                for e in packager.push(&f) {
                    emit(e);
                }
            }
            for e in packager.finish() {
                emit(e);
            }
            out.end();
            if let Some(r) = recorder {
                let _ = tokio::task::spawn_blocking(move || r.finish()).await;
            }
            tracing::debug!(stream = %name, "live packaging ended");
        });
        Some(tx)
    }

    /// The HTTP output of a stream, while it is live or since it last ended.
    #[must_use]
    pub fn output(&self, name: &str) -> Option<Arc<Output>> {
        self.outputs.lock().expect("outputs").get(name).cloned()
    }

    /// Players reading a stream over HTTP now.
    #[must_use]
    pub fn http_viewers(&self, name: &str) -> u32 {
        self.output(name).map_or(0, |o| o.viewers())
    }

    /// The streams live now, with their HTTP viewers.
    #[must_use]
    pub fn live(&self) -> Vec<(String, u32)> {
        let outputs = self.outputs.lock().expect("outputs");
        outputs.iter().filter(|(_, o)| !o.ended()).map(|(name, o)| (name.clone(), o.viewers())).collect()
    }

    /// Forgets a stream's output when `gone` (it was deleted).
    pub fn forget_if(&self, name: &str, gone: bool) {
        if gone {
            self.outputs.lock().expect("outputs").remove(name);
        }
    }
}
