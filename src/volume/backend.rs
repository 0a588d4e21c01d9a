//! The store backend a volume's `[store]` section names, with the object store's key read
//! from a credentials file or the environment (never from nanofs.toml).

use super::{Error, Result};
use crate::config::{StoreBackend, StoreSection};
use crate::store::bucket::BucketConfig;
use crate::store::object::ObjectSettings;
use crate::store::Backend;
use std::path::Path;
use std::time::Duration;

/// The backend for the volume in `dir` configured by `store`.
pub(crate) fn backend(store: &StoreSection, dir: &Path) -> Result<Backend> {
    if store.backend == StoreBackend::Local {
        return Ok(Backend::Local);
    }
    let (access_key_id, secret_access_key) = credentials(store, dir)?;
    Ok(Backend::Object(ObjectSettings {
        bucket: BucketConfig {
            endpoint: store.s3_endpoint.clone(),
            bucket: store.s3_bucket.clone(),
            region: store.s3_region.clone(),
            // A prefix names a folder of the bucket.
            prefix: match store.s3_prefix.as_str() {
                "" => String::new(),
                p if p.ends_with('/') => p.to_string(),
                p => format!("{p}/"),
            },
            access_key_id,
            secret_access_key,
            timeout: Duration::from_secs(u64::from(store.timeout_secs)),
        },
        cache_bytes: u64::from(store.cache_gib) << 30,
        pack_bytes: u64::from(store.pack_mib) << 20,
        uploads: store.uploads as usize,
    }))
}

/// The access key: from `credentials_file` (relative to the volume directory) when set,
/// else `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
fn credentials(store: &StoreSection, dir: &Path) -> Result<(String, String)> {
    if store.credentials_file.is_empty() {
        let id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        if id.is_empty() || secret.is_empty() {
            return Err(Error::NotAVolume(
                "the volume keeps its chunks in an object store: set store.credentials_file, or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            ));
        }
        return Ok((id, secret));
    }
    let path = dir.join(&store.credentials_file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::NotAVolume(format!("cannot read the credentials file {}: {e}", path.display())))?;
    parse_credentials(&text).ok_or_else(|| {
        Error::NotAVolume(format!(
            "{}: want the lines aws_access_key_id = … and aws_secret_access_key = …",
            path.display()
        ))
    })
}

/// The key id and secret of an AWS-style credentials file (the first of each; section
/// headers and comments are skipped).
fn parse_credentials(text: &str) -> Option<(String, String)> {
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" | "access_key_id" if id.is_none() => id = Some(v),
            "aws_secret_access_key" | "secret_access_key" if secret.is_none() => secret = Some(v),
            _ => {}
        }
    }
    Some((id.filter(|s| !s.is_empty())?, secret.filter(|s| !s.is_empty())?))
}

/// `text` (nanofs.toml) with the keys of its `[store]` section set to `store`'s values.
#[must_use]
pub fn with_store_section(text: &str, store: &StoreSection) -> String {
    let value = toml::Value::try_from(store).expect("the store section serialises");
    let table = value.as_table().expect("a table");
    let mut out = String::new();
    let mut in_store = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_store = line.trim() == "[store]";
        }
        let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|_| in_store && !line.starts_with('#'));
        match key.and_then(|k| table.get(k).map(|v| (k, v))) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_in_aws_s_format_are_read() {
        let text = "[default]\n# a comment\naws_access_key_id = GK123\naws_secret_access_key=\"s3cr3t\"\n";
        assert_eq!(parse_credentials(text), Some(("GK123".into(), "s3cr3t".into())));
        assert_eq!(parse_credentials("aws_access_key_id = GK123\n"), None);
    }

    #[test]
    fn the_store_section_is_rewritten_in_place() {
        let store = StoreSection {
            backend: StoreBackend::S3,
            s3_endpoint: "http://127.0.0.1:3900".into(),
            s3_bucket: "media".into(),
            s3_region: "garage".into(),
            ..StoreSection::default()
        };
        let text = with_store_section(&crate::config::Config::default_file_text(), &store);
        let config = crate::config::Config::parse(&text).expect("parses");
        assert_eq!(config.store, store);
        assert!(text.contains("# Where chunk bodies are kept"), "comments stay");
    }
}
