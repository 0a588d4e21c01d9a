//! Countries of client addresses, from the MaxMind-format database `[access] geoip_db`,
//! for tokens and share links bound to countries. The database is read again when its
//! path or modification time changes (a monthly update needs no restart).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a client's address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whereabouts {
    /// Its ISO 3166-1 alpha-2 code, upper case.
    Country(String),
    /// The database has no country for it (a private or loopback address, say).
    Unknown,
    /// No database is configured, or it cannot be read (why).
    NoDatabase(String),
}

type Loaded = (PathBuf, Option<SystemTime>, Arc<maxminddb::Reader<Vec<u8>>>);

/// The database, opened at first use.
#[derive(Default)]
pub struct Geo {
    loaded: Mutex<Option<Loaded>>,
}

impl Geo {
    fn reader(&self, path: &str) -> Result<Arc<maxminddb::Reader<Vec<u8>>>, String> {
        if path.is_empty() {
            return Err("no country database is configured ([access] geoip_db)".into());
        }
        let path = PathBuf::from(path);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut loaded = self.loaded.lock().expect("geo database");
        if let Some((p, t, r)) = loaded.as_ref() {
            if *p == path && *t == mtime {
                return Ok(r.clone());
            }
        }
        let reader = maxminddb::Reader::open_readfile(&path)
            .map_err(|e| format!("the country database {} cannot be read: {e}", path.display()))?;
        let reader = Arc::new(reader);
        tracing::info!(path = %path.display(), "country database loaded");
        *loaded = Some((path, mtime, reader.clone()));
        Ok(reader)
    }

    /// The country of `ip` in the database at `path`.
    pub fn locate(&self, path: &str, ip: IpAddr) -> Whereabouts {
        let reader = match self.reader(path) {
            Ok(r) => r,
            Err(why) => return Whereabouts::NoDatabase(why),
        };
        let found = reader.lookup(ip).and_then(|r| r.decode::<maxminddb::geoip2::Country<'_>>());
        match found {
            Ok(Some(c)) => match c.country.iso_code.or(c.registered_country.iso_code) {
                Some(code) => Whereabouts::Country(code.to_ascii_uppercase()),
                None => Whereabouts::Unknown,
            },
            Ok(None) => Whereabouts::Unknown,
            Err(e) => Whereabouts::NoDatabase(format!("the country database failed a lookup: {e}")),
        }
    }
}
