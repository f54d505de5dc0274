//! A local RFC 3161 time-stamping authority: `openssl ts -reply`, with a test CA and a TSA
//! certificate made by `openssl` itself, answering over HTTP on loopback.
//!
//! `openssl` is found on `PATH` (package `openssl`); when it is missing the test prints a
//! loud `SKIPPED` line and passes, unless `AUDIT_REQUIRE_SERVICES=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The TSA's key type.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    EcP256,
    Rsa2048,
}

/// A time-stamping authority made for one test: its files live in a temporary folder.
pub struct OpensslTsa {
    openssl: PathBuf,
    dir: tempfile::TempDir,
    requests: AtomicU64,
}

impl OpensslTsa {
    /// A new CA and TSA certificate of `kind`; `digests` are the imprint digests the TSA
    /// accepts (a request with another is rejected). `None` after a SKIPPED line when
    /// `openssl` is not installed.
    pub fn create(kind: KeyKind, digests: &str) -> Option<Arc<Self>> {
        let openssl = super::services::program("openssl", "openssl")?;
        let tsa = Self {
            openssl,
            dir: tempfile::tempdir().expect("temporary folder"),
            requests: AtomicU64::new(0),
        };
        let dir = tsa.dir.path();
        let key_args: &[&str] = match kind {
            KeyKind::EcP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::Rsa2048 => &["-newkey", "rsa:2048"],
        };
        tsa.run(&[
            &["req", "-x509", "-nodes", "-days", "30"][..],
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-subj", "/CN=audit-layer test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]);
        tsa.run(&[
            &["req", "-nodes"][..],
            key_args,
            &["-subj", "/O=audit-layer tests/CN=audit-layer test TSA"],
            &["-keyout", "tsa.key", "-out", "tsa.csr"],
        ]);
        std::fs::write(
            dir.join("tsa.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n",
        )
        .expect("write tsa.ext");
        tsa.run(&[&[
            "x509",
            "-req",
            "-days",
            "30",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "tsa.ext",
            "-out",
            "tsa.pem",
        ][..]]);
        std::fs::write(dir.join("serial"), "01\n").expect("write serial");
        std::fs::write(
            dir.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = test_tsa\n\n[ test_tsa ]\nserial = {serial}\n\
                 signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = {digests}\n\
                 accuracy = secs:1\nordering = no\ntsa_name = yes\n\
                 ess_cert_id_alg = sha256\n",
                serial = dir.join("serial").display(),
            ),
        )
        .expect("write tsa.cnf");
        Some(Arc::new(tsa))
    }

    fn run(&self, args: &[&[&str]]) -> Vec<u8> {
        let args: Vec<&str> = args.concat();
        let output = Command::new(&self.openssl)
            .args(&args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// The TSA's certificate (PEM).
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("tsa.pem")
    }

    /// The TSA's certificate, DER.
    pub fn certificate_der(&self) -> Vec<u8> {
        self.run(&[&["x509", "-in", "tsa.pem", "-outform", "der"][..]])
    }

    /// The CA's certificate (PEM), which issued the TSA's.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The authority's answer (`TimeStampResp` DER) to `query` (`TimeStampReq` DER).
    pub fn reply(&self, query: &[u8]) -> Vec<u8> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let (query_file, reply_file) = (format!("query-{n}.tsq"), format!("reply-{n}.tsr"));
        std::fs::write(self.dir.path().join(&query_file), query).expect("write query");
        self.run(&[&[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            &query_file,
            "-signer",
            "tsa.pem",
            "-inkey",
            "tsa.key",
            "-out",
            &reply_file,
        ][..]]);
        std::fs::read(self.dir.path().join(&reply_file)).expect("read reply")
    }

    /// `openssl ts -verify` of `token` (a `TimeStampToken`, DER) over `message`, against the
    /// test CA: `Ok` when it says `Verification: OK`.
    pub fn openssl_verifies(&self, message: &[u8], token: &[u8]) -> Result<(), String> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let (data, token_file) = (format!("data-{n}"), format!("token-{n}.der"));
        std::fs::write(self.dir.path().join(&data), message).expect("write data");
        std::fs::write(self.dir.path().join(&token_file), token).expect("write token");
        let output = Command::new(&self.openssl)
            .args([
                "ts",
                "-verify",
                "-data",
                &data,
                "-in",
                &token_file,
                "-token_in",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa.pem",
            ])
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if output.status.success() && said.contains("Verification: OK") {
            Ok(())
        } else {
            Err(said)
        }
    }

    /// Serves the authority over HTTP on loopback (POST any path); its URL. The server
    /// stops with the test's runtime.
    pub async fn serve(self: &Arc<Self>) -> String {
        use axum::body::Bytes;
        let tsa = Arc::clone(self);
        let app = axum::Router::new().fallback(axum::routing::post(move |query: Bytes| {
            let tsa = Arc::clone(&tsa);
            async move {
                let reply = tokio::task::spawn_blocking(move || tsa.reply(&query))
                    .await
                    .expect("openssl ts -reply");
                (
                    [(http::header::CONTENT_TYPE, "application/timestamp-reply")],
                    reply,
                )
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/tsa")
    }

    /// The folder the authority's files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
