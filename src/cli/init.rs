//! `nanofs init VOLUME`: create a volume, its chunks in local packs or in an object store.

use super::credential;
use crate::config::{StoreBackend, StoreSection};
use crate::crypto::kdf::Argon2Params;
use crate::volume::Volume;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to create the volume in (must not exist, or be empty).
    volume: PathBuf,
    /// Read the passphrase from the first line of this file (else $NANOFS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
}

/// Where an S3-compatible object store keeps the chunks (docs/object-store.md).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// Keep chunks in this S3-compatible object store (http(s)://host:port), not beside the database.
    #[arg(long, value_name = "URL", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The bucket.
    #[arg(long, value_name = "NAME", requires = "s3_endpoint")]
    s3_bucket: Option<String>,
    /// The store's region (Garage's `s3_region`).
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Object names start with this (volumes sharing a bucket each need their own).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    s3_prefix: String,
    /// The access key, as lines `aws_access_key_id = …` and `aws_secret_access_key = …` (else
    /// $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY when the volume opens).
    #[arg(long, value_name = "FILE")]
    s3_credentials: Option<PathBuf>,
}

impl S3Args {
    /// Whether an object store was named.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.s3_endpoint.is_some()
    }

    /// The `[store]` section these flags describe (the local backend when none is given).
    pub fn store_section(&self) -> anyhow::Result<StoreSection> {
        let Some(endpoint) = &self.s3_endpoint else { return Ok(StoreSection::default()) };
        let credentials_file = match &self.s3_credentials {
            // Absolute, since the file is read relative to the volume directory.
            Some(f) => std::path::absolute(f)
                .with_context(|| format!("credentials file {}", f.display()))?
                .to_string_lossy()
                .into_owned(),
            None => String::new(),
        };
        Ok(StoreSection {
            backend: StoreBackend::S3,
            s3_endpoint: endpoint.clone(),
            s3_bucket: self.s3_bucket.clone().unwrap_or_default(),
            s3_region: self.s3_region.clone(),
            s3_prefix: self.s3_prefix.clone(),
            credentials_file,
            ..StoreSection::default()
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = args.s3.store_section()?;
    let pass = credential::read_passphrase(args.passphrase_file.as_deref(), credential::ENV, "Passphrase", true)?;
    Volume::init_on(&args.volume, &pass, Argon2Params::DEFAULT, &store)
        .with_context(|| format!("cannot create volume {}", args.volume.display()))?;
    match store.backend {
        StoreBackend::Local => println!("created volume {}", args.volume.display()),
        StoreBackend::S3 => println!(
            "created volume {} with its chunks in bucket {} at {}",
            args.volume.display(),
            store.s3_bucket,
            store.s3_endpoint
        ),
    }
    Ok(())
}
