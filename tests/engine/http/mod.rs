//! The HTTP sidecar in process: `nanofs::http::router` over a volume in a temporary
//! directory, called with `tower::ServiceExt::oneshot` (no socket, no daemon). Pure
//! request/response behaviour lives here; real clients over loopback (curl, tuspy, the
//! transfer client, a browser) and what a mount sees of HTTP's changes stay in `tests/it`.

mod auth;
mod errors;
mod files;
mod galleries;
mod tus;

use crate::common::{engine_volume, ENGINE_PASSPHRASE};
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use nanofs::gallery::Galleries;
use nanofs::http::{router, Sidecar, SidecarConfig};
use nanofs::volume::{Credential, OpenOptions, Permission, Volume};
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

/// A sidecar over a fresh volume, and a runtime to call it on.
pub struct Served {
    router: axum::Router,
    rt: tokio::runtime::Runtime,
    pub galleries: Arc<Galleries>,
    pub vol: Arc<Volume>,
    pub dir: PathBuf,
    // Last: the directory goes after the volume in it has been dropped.
    _tmp: tempfile::TempDir,
}

/// A response: status, headers and the whole body.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (`None` when absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
}

impl Served {
    /// A sidecar with the volume's own settings; `toml` is its `nanofs.toml` (empty: the
    /// defaults).
    pub fn new(toml: &str) -> Self {
        Self::with(toml, |_| {})
    }

    /// A sidecar whose settings `configure` changes first.
    pub fn with(toml: &str, configure: impl FnOnce(&mut SidecarConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        engine_volume(&dir, toml).close().unwrap();
        Self::over(tmp, dir, false, configure)
    }

    fn over(tmp: tempfile::TempDir, dir: PathBuf, read_only: bool, configure: impl FnOnce(&mut SidecarConfig)) -> Self {
        let keys = Volume::unlock(&dir, &Credential::Passphrase(ENGINE_PASSPHRASE.to_vec().into())).unwrap();
        let vol = Volume::open(&dir, keys, &OpenOptions { read_only, ..OpenOptions::default() }).unwrap();
        let galleries = Galleries::open(Arc::new(vol)).unwrap();
        let vol = galleries.volume().clone();
        let mut config = SidecarConfig::default();
        configure(&mut config);
        let router = router(Sidecar::new(galleries.clone(), None, config));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        Self { router, rt, galleries, vol, dir, _tmp: tmp }
    }

    /// Closes the volume, lets `between` change its directory (damage it), and serves it
    /// again, read-only if asked.
    pub fn reopen(self, read_only: bool, between: impl FnOnce(&std::path::Path)) -> Self {
        let Self { router, rt, galleries, vol, dir, _tmp: tmp } = self;
        drop((router, rt, galleries));
        let vol = Arc::into_inner(vol).expect("nothing else holds the volume");
        vol.close().unwrap();
        drop(vol);
        between(&dir);
        Self::over(tmp, dir, read_only, |_| {})
    }

    /// A token string for `prefix` allowing `allow`, valid for an hour.
    pub fn token(&self, prefix: &str, allow: &[Permission]) -> String {
        self.vol.token_create("test", prefix, allow, 3600, None, &Default::default()).unwrap().1
    }

    /// A token that may do everything everywhere.
    pub fn admin_token(&self) -> String {
        self.token("/", &[Permission::Read, Permission::Write, Permission::Delete])
    }

    /// Sends `req` through the router and reads the whole response.
    pub fn request(&self, req: Request<Body>) -> Reply {
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.expect("the router is infallible");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("the body arrives").to_vec();
            Reply { status, headers, body }
        })
    }

    /// `METHOD uri` with a bearer token (if any), extra headers and a body.
    pub fn send(&self, method: &str, uri: &str, token: Option<&str>, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.request(req.body(Body::from(body)).unwrap())
    }

    /// `GET uri` with a token and headers.
    pub fn get(&self, uri: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", uri, token, headers, Vec::new())
    }

    /// `METHOD uri` with a token and a JSON body (`None`: no body).
    pub fn call(&self, method: &str, uri: &str, token: Option<&str>, json: Option<serde_json::Value>) -> Reply {
        match json {
            Some(j) => {
                self.send(method, uri, token, &[("content-type", "application/json")], j.to_string().into_bytes())
            }
            None => self.send(method, uri, token, &[], Vec::new()),
        }
    }

    /// Writes `data` as the file at `path` (creating its directories) through the engine.
    pub fn put_file(&self, path: &str, data: &[u8]) -> nanofs::Ino {
        let (dir, name) = self.vol.mkdir_parents(path, (0, 0)).unwrap();
        crate::common::write_file(&self.vol, dir, name, data)
    }
}
