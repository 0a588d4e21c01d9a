//! Delta push: when the target (or `--base`) exists on the sidecar, send the new file's
//! chunk manifest first and then only the chunks the server lacks (see `http::delta`).

use super::http::{check, Remote, Retry};
use super::Settings;
use crate::chunk::{cut_points, ChunkParams, Gear};
use serde::Deserialize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One chunk of the local file.
struct Chunk {
    offset: u64,
    len: u32,
    hash: String,
}

#[derive(Deserialize)]
struct Plan {
    session: String,
    missing: Vec<usize>,
}

/// The file cut exactly as the volume would cut it, streaming: FastCDC over a buffer that
/// keeps the undecided tail, each chunk hashed with plain BLAKE2b-256.
fn manifest(path: &Path, params: &ChunkParams) -> std::io::Result<Vec<Chunk>> {
    manifest_in_blocks(path, params, 16 << 20)
}

fn manifest_in_blocks(path: &Path, params: &ChunkParams, block: usize) -> std::io::Result<Vec<Chunk>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0u64;
    let mut block = vec![0u8; block];
    loop {
        let n = f.read(&mut block)?;
        buf.extend_from_slice(&block[..n]);
        let at_end = n == 0;
        let mut used = 0;
        for len in cut_points(&buf, params, at_end) {
            let piece = &buf[used..used + len];
            out.push(Chunk {
                offset: base + used as u64,
                len: len as u32,
                hash: crate::ids::hex(&crate::volume::plain_hash(piece)),
            });
            used += len;
        }
        buf.drain(..used);
        base += used as u64;
        if at_end {
            return Ok(out);
        }
    }
}

/// Pushes `local` to `target` as a delta against `base` (default: the target). `Ok(None)`
/// when there is nothing to reuse (no base), so a plain upload is the better way.
#[allow(clippy::too_many_arguments)]
pub fn push(
    remote: &Remote,
    local: &Path,
    target: &str,
    base: Option<&str>,
    cdc_kib: [u32; 3],
    s: &Settings,
    bar: &indicatif::ProgressBar,
    sent: &AtomicU64,
) -> anyhow::Result<Option<()>> {
    let base_path = base.unwrap_or(target);
    let exists = remote.retrying("looking for the base", || {
        let url = format!("{}/files{}", remote.base, super::pull::encode_path(base_path));
        let r = remote.agent().head(&url).header("Authorization", remote.auth()).call()?;
        if r.status().as_u16() == 404 {
            return Ok(false);
        }
        check(r, "HEAD of the base").map(|_| true)
    })?;
    if !exists {
        return Ok(None);
    }
    // A volume with keyed boundaries gives its key to clients that may write; without it
    // the manifest would be cut elsewhere and nothing would be reused.
    let gear = match s.chunker_key.as_deref().map(|k| crate::ids::unhex(k).and_then(|b| <[u8; 32]>::try_from(b).ok())) {
        None => Gear::Public,
        Some(Some(key)) => Gear::keyed(&key),
        Some(None) => anyhow::bail!("the server sent a malformed chunker key"),
    };
    let params = ChunkParams::from_kib(cdc_kib[0], cdc_kib[1], cdc_kib[2]).with_gear(gear);
    let chunks = manifest(local, &params)?;
    let body = serde_json::json!({
        "target": target,
        "base": base,
        "chunks": chunks.iter().map(|c| serde_json::json!({"len": c.len, "hash": c.hash})).collect::<Vec<_>>(),
    })
    .to_string();
    let plan: Plan = remote.retrying("sending the manifest", || {
        let r = remote
            .agent()
            .post(format!("{}/api/delta", remote.base))
            .header("Authorization", remote.auth())
            .header("Content-Type", "application/json")
            .send(body.as_bytes())?;
        let mut r = check(r, "delta manifest")?;
        let text = r.body_mut().read_to_string().map_err(|e| Retry::Again(e.to_string(), None))?;
        serde_json::from_str(&text).map_err(|e| Retry::Fatal(e.to_string()))
    })?;
    let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
    let missing_bytes: u64 = plan.missing.iter().map(|&i| u64::from(chunks[i].len)).sum();
    bar.inc(total - missing_bytes);
    let file = std::fs::File::open(local)?;
    let queue = Mutex::new(plan.missing.clone());
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.connections.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut buf = Vec::new();
                    loop {
                        let Some(i) = queue.lock().expect("queue").pop() else { return Ok(()) };
                        let c = &chunks[i];
                        buf.resize(c.len as usize, 0);
                        file.read_exact_at(&mut buf, c.offset)?;
                        let url = format!("{}/api/delta/{}/{i}", remote.base, plan.session);
                        remote.retrying("sending a chunk", || {
                            let r = remote.agent().put(&url).header("Authorization", remote.auth()).send(&buf[..])?;
                            check(r, "delta chunk").map(|_| ())
                        })?;
                        bar.inc(u64::from(c.len));
                        sent.fetch_add(u64::from(c.len), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))).collect()
    });
    for r in results {
        r?;
    }
    remote.retrying("committing the delta", || {
        let r = remote
            .agent()
            .post(format!("{}/api/delta/{}/commit", remote.base, plan.session))
            .header("Authorization", remote.auth())
            .send_empty()?;
        check(r, "delta commit").map(|_| ())
    })?;
    tracing::info!(target, reused = total - missing_bytes, sent = missing_bytes, "delta pushed");
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_manifest_cuts_like_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let public = crate::chunk::ChunkParams::from_kib(16, 64, 256);
        let keyed = public.clone().with_gear(super::Gear::keyed(&[4; 32]));
        for params in [public, keyed] {
            let whole = crate::chunk::cut_points(&data, &params, true);
            // Read in small blocks, so that cuts are decided across block boundaries.
            for block in [100_000, 1 << 20, 16 << 20] {
                let m = super::manifest_in_blocks(&path, &params, block).unwrap();
                assert_eq!(m.iter().map(|c| c.len as usize).collect::<Vec<_>>(), whole, "block {block}");
            }
        }
    }
}
