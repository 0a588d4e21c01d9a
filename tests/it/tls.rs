//! HTTPS: TLS 1.3 with the hybrid post-quantum group X25519MLKEM768 first, classic groups
//! still accepted; the transfer client over HTTPS; no plain HTTP off loopback.

use crate::common::*;
use crate::http::Server;
use std::io::{Read, Write};
use std::sync::Arc;

/// A TLS 1.3 client that offers only `groups`; returns the negotiated group and the
/// response's status line.
fn get_healthz(
    addr: &str,
    ca: &std::path::Path,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> (String, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(addr).unwrap());
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let group = format!("{:?}", tls.conn.negotiated_key_exchange_group().map(|g| g.name()));
    (group, String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string())
}

#[test]
fn post_quantum_and_classic_clients_connect_over_tls_1_3_only() {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write"]).trim().to_string();
    let server = Server::start_with(&v, "127.0.0.1:0", &["--tls-self-signed"]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let addr = server.base.trim_start_matches("https://").to_string();
    let ca = v.dir.join("tls/cert.pem");

    let (group, status) = get_healthz(&addr, &ca, vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768]);
    assert_eq!(group, "Some(X25519MLKEM768)");
    assert!(status.contains("200"), "{status}");
    let (group, status) = get_healthz(&addr, &ca, vec![rustls::crypto::aws_lc_rs::kx_group::X25519]);
    assert_eq!(group, "Some(X25519)");
    assert!(status.contains("200"), "{status}");

    // curl (OpenSSL, classic groups) connects; TLS 1.2 is refused.
    let url = format!("https://localhost:{}/healthz", addr.rsplit(':').next().unwrap());
    let ok = sh(&format!("curl -sS --cacert '{}' -o /dev/null -w '%{{http_code}}' '{url}'", ca.display()));
    assert_eq!(ok, "200");
    assert!(!sh_status(&format!("curl -sS --cacert '{}' --tls-max 1.2 -o /dev/null '{url}'", ca.display())));

    // The transfer client over HTTPS, trusting the self-signed certificate.
    let src = v.tmp.path().join("x.bin");
    write_random_file(&src, 5, 3 << 20);
    let base = format!("https://localhost:{}", addr.rsplit(':').next().unwrap());
    let state = v.tmp.path().join("state");
    for args in [
        vec!["push", src.to_str().unwrap(), &format!("{base}/files/x.bin")],
        vec!["pull", &format!("{base}/files/x.bin"), v.tmp.path().join("back.bin").to_str().unwrap()],
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .args(["--ca-cert", ca.to_str().unwrap(), "-q"])
            .env("NANOFS_TOKEN", &token)
            .env("XDG_STATE_HOME", &state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(sha256(&v.tmp.path().join("back.bin")), sha256(&src));
    server.stop();

    // Plain HTTP is refused off loopback (before anything is bound).
    let out = v.run(&["serve", v.path(), "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing plain HTTP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
