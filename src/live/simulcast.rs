//! Simulcast layer choice: which of a publisher's layers each WebRTC viewer receives, from
//! the layers' measured bitrates and the viewer's estimated bandwidth (TWCC, or REMB).
//!
//! A viewer moves down as soon as its layer no longer fits its estimate, and up only
//! when the better layer fits with room to spare, so an estimate near a layer's rate does
//! not make it flap. The switch itself waits for a keyframe of the new layer (the loop).

use std::time::{Duration, Instant};
use str0m::media::Rid;

/// A better layer is taken when its rate times this fits the estimate.
const UP_MARGIN: f64 = 1.3;
/// A lower layer is taken when its rate times this fits the estimate.
const DOWN_MARGIN: f64 = 1.1;
/// Rates are measured over windows this long (keyframes make shorter ones noisy).
const WINDOW: Duration = Duration::from_secs(1);

/// The layers a publisher sends, in the order first seen, with their measured rates.
#[derive(Debug, Default)]
pub struct LayerRates {
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    rid: Rid,
    bytes: u64,
    since: Instant,
    /// Bits per second, smoothed over windows (`None` before the first window ends).
    bps: Option<u64>,
}

impl LayerRates {
    /// Counts a frame of `bytes` of layer `rid` received at `now`.
    pub fn add(&mut self, rid: Rid, bytes: usize, now: Instant) {
        let layer = match self.layers.iter_mut().position(|l| l.rid == rid) {
            Some(i) => &mut self.layers[i],
            None => {
                self.layers.push(Layer { rid, bytes: 0, since: now, bps: None });
                self.layers.last_mut().expect("just pushed")
            }
        };
        layer.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(layer.since);
        if elapsed >= WINDOW {
            let bps = (u128::from(layer.bytes) * 8 * 1_000_000 / elapsed.as_micros().max(1)) as u64;
            layer.bps = Some(layer.bps.map_or(bps, |old| (old + bps) / 2));
            layer.bytes = 0;
            layer.since = now;
        }
    }

    /// The layers whose rate is known, best (highest rate) first, with their bits per second.
    #[must_use]
    pub fn ranked(&self) -> Vec<(Rid, u64)> {
        let mut out: Vec<(Rid, u64)> = self.layers.iter().filter_map(|l| Some((l.rid, l.bps?))).collect();
        out.sort_by_key(|&(_, bps)| std::cmp::Reverse(bps));
        out
    }

    /// The layer to start a viewer on: the best measured one, else the first seen.
    #[must_use]
    pub fn default_layer(&self) -> Option<Rid> {
        self.ranked().first().map(|&(r, _)| r).or_else(|| self.layers.first().map(|l| l.rid))
    }
}

/// The layer a viewer on `current` should receive, given `ranked` layers (best first, bits
/// per second) and its estimated bandwidth (bits per second, `None`: not known yet).
#[must_use]
pub fn choose(ranked: &[(Rid, u64)], estimate: Option<u64>, current: Option<Rid>) -> Option<Rid> {
    let Some(&(best, _)) = ranked.first() else { return current };
    let Some(estimate) = estimate else { return current.or(Some(best)) };
    let fitting =
        |margin: f64| ranked.iter().find(|&&(_, bps)| bps as f64 * margin <= estimate as f64).map(|&(r, _)| r);
    let rank = |rid: Option<Rid>| rid.and_then(|r| ranked.iter().position(|&(x, _)| x == r));
    match rank(current) {
        Some(at) if ranked[at].1 <= estimate => match fitting(UP_MARGIN) {
            Some(up) if rank(Some(up)) < Some(at) => Some(up),
            _ => current,
        },
        _ => Some(fitting(DOWN_MARGIN).unwrap_or(ranked[ranked.len() - 1].0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<(Rid, u64)> {
        vec![(Rid::from("h"), 2_500_000), (Rid::from("m"), 800_000), (Rid::from("l"), 200_000)]
    }

    fn pick(estimate: Option<u64>, current: &str) -> String {
        choose(&layers(), estimate, Some(Rid::from(current))).unwrap().to_string()
    }

    #[test]
    fn viewers_start_on_the_best_layer_and_keep_it_while_it_fits() {
        assert_eq!(choose(&layers(), None, None), Some(Rid::from("h")));
        assert_eq!(pick(Some(10_000_000), "h"), "h");
        assert_eq!(pick(Some(2_600_000), "h"), "h");
    }

    #[test]
    fn a_bandwidth_drop_moves_down_to_the_best_layer_that_fits() {
        assert_eq!(pick(Some(2_000_000), "h"), "m");
        assert_eq!(pick(Some(500_000), "h"), "l");
        // Below every layer: the lowest, not nothing.
        assert_eq!(pick(Some(50_000), "m"), "l");
    }

    #[test]
    fn moving_up_needs_room_to_spare() {
        // 2.6 Mbit/s fits "h" (2.5) but not with 30 % to spare: stay on "m".
        assert_eq!(pick(Some(2_600_000), "m"), "m");
        assert_eq!(pick(Some(3_500_000), "m"), "h");
        assert_eq!(pick(Some(1_100_000), "l"), "m");
    }

    #[test]
    fn rates_are_measured_per_layer_and_ranked() {
        let mut r = LayerRates::default();
        let t0 = Instant::now();
        for i in 0..=30u64 {
            let now = t0 + Duration::from_millis(i * 50);
            r.add(Rid::from("q"), 1_000, now);
            r.add(Rid::from("f"), 10_000, now);
        }
        assert_eq!(r.default_layer(), Some(Rid::from("f")));
        let ranked = r.ranked();
        assert_eq!(ranked.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>(), ["f", "q"]);
        // 10 kB every 50 ms is 1.6 Mbit/s.
        assert!((1_400_000..1_800_000).contains(&ranked[0].1), "{ranked:?}");
    }
}
