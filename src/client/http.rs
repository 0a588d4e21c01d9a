//! Requests with retries: exponential backoff with jitter on connection errors, 5xx and
//! 429 (honouring `Retry-After`), a bounded number of times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A sidecar: its base URL, a token, and an HTTP agent shared by the workers.
pub struct Remote {
    /// `http://host:port`.
    pub base: String,
    token: String,
    agent: ureq::Agent,
    /// Requests retried so far.
    pub retries: AtomicU64,
    max_retries: u32,
}

/// Why an attempt failed, and whether another one may succeed.
#[derive(Debug)]
pub enum Retry {
    /// Transient: try again (after at least this long, when the server said so).
    Again(String, Option<Duration>),
    /// Permanent: give up.
    Fatal(String),
}

impl From<ureq::Error> for Retry {
    fn from(e: ureq::Error) -> Self {
        Retry::Again(e.to_string(), None)
    }
}

impl From<std::io::Error> for Retry {
    fn from(e: std::io::Error) -> Self {
        Retry::Fatal(e.to_string())
    }
}

/// A response, with the status classified.
pub type Response = ureq::http::Response<ureq::Body>;

impl Remote {
    /// A client of the sidecar at `base` with bearer `token`; `ca_cert` (PEM) replaces the
    /// Mozilla roots for HTTPS, e.g. to trust a self-signed sidecar; with `device_key`
    /// (made if missing) every request carries a proof of this device, for tokens bound
    /// to one (`crypto::device`).
    pub fn new(
        base: &str,
        token: &str,
        max_retries: u32,
        ca_cert: Option<&std::path::Path>,
        device_key: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let roots = match ca_cert {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
                let cert =
                    ureq::tls::Certificate::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                ureq::tls::RootCerts::new_with_certs(&[cert])
            }
            None => ureq::tls::RootCerts::WebPki,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(crate::http::tls::provider())
            .root_certs(roots)
            .build();
        let mut config = ureq::Agent::config_builder();
        if let Some(path) = device_key {
            let key = crate::crypto::device::DeviceKey::load_or_create(path)
                .map_err(|e| anyhow::anyhow!("device key {}: {e}", path.display()))?;
            config = config.middleware(DeviceSigner(key));
        }
        let config = config
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(32)
            .build();
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: ureq::Agent::new_with_config(config),
            retries: AtomicU64::new(0),
            max_retries,
        })
    }

    /// The bearer header value.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The agent, for building requests.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Runs `attempt` until it succeeds, fails permanently, or runs out of retries.
    pub fn retrying<T>(&self, what: &str, mut attempt: impl FnMut() -> Result<T, Retry>) -> anyhow::Result<T> {
        let mut tries = 0u32;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(Retry::Fatal(m)) => anyhow::bail!("{what}: {m}"),
                Err(Retry::Again(m, after)) => {
                    if tries >= self.max_retries {
                        anyhow::bail!("{what}: {m} (gave up after {tries} retries)");
                    }
                    let wait = after.unwrap_or_else(|| backoff(tries));
                    tracing::warn!(what, error = %m, retry_in = ?wait, "retrying");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                    tries += 1;
                }
            }
        }
    }
}

/// Adds this device's proof to every request.
struct DeviceSigner(crate::crypto::device::DeviceKey);

impl ureq::middleware::Middleware for DeviceSigner {
    fn handle(
        &self,
        mut request: ureq::http::Request<ureq::SendBody>,
        next: ureq::middleware::MiddlewareNext,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        let proof = self.0.proof(request.method().as_str(), &target);
        let value = ureq::http::HeaderValue::from_str(&proof).expect("base64url and digits");
        request.headers_mut().insert(crate::crypto::device::HEADER, value);
        next.handle(request)
    }
}

/// 0.5 s, 1 s, 2 s, ... capped at 30 s, each with up to 50 % random jitter so that many
/// clients do not retry in lockstep.
fn backoff(try_no: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << try_no.min(6)).min(Duration::from_secs(30));
    let mut r = [0u8; 2];
    crate::crypto::keys::random_bytes(&mut r);
    let jitter = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) * 0.5;
    base.mul_f64(1.0 + jitter)
}

/// Classifies a response: 2xx passes; 429 and 5xx are transient; other statuses are
/// permanent, with the server's message.
pub fn check(mut r: Response, what: &str) -> Result<Response, Retry> {
    let status = r.status().as_u16();
    if r.status().is_success() || status == 304 {
        return Ok(r);
    }
    let after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = r.body_mut().read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(body);
    let m = format!("{what}: HTTP {status} {message}");
    if status == 429 || status >= 500 {
        Err(Retry::Again(m, after))
    } else {
        Err(Retry::Fatal(m))
    }
}

/// A header of a response as a string.
pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_is_capped() {
        let a = super::backoff(0);
        assert!(a >= std::time::Duration::from_millis(500) && a <= std::time::Duration::from_millis(750));
        let b = super::backoff(3);
        assert!(b >= std::time::Duration::from_secs(4) && b <= std::time::Duration::from_secs(6));
        assert!(super::backoff(20) <= std::time::Duration::from_secs(45));
    }
}
