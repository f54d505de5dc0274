//! RFC 3161 timestamps against a local `openssl ts` authority: our requests are answered,
//! the tokens verify (and `openssl ts -verify` agrees), and another message, another
//! authority, a refused request or any changed byte of what a token signs is caught; the
//! tree follower has each head stamped over HTTP, receipts carry the tokens, and `audit
//! verify-receipt --tsa-cert` checks them.

mod common;

use std::time::{Duration, SystemTime};

use audit_layer::file::{CheckpointKey, JsonlFileSink};
use audit_layer::merkle::{
    NoteVerifier, Receipt, ReceiptError, TimestampAuthority, TimestampError, TimestampRequest,
    TreeFollower, TreeHead, newest_signed_head, signed_heads, timestamps_of, verify_timestamp,
};
use audit_layer::{AuditTrail, Category};
use common::tsa::{KeyKind, OpensslTsa};

const HEAD: &[u8] =
    b"audit.example.com/orders\n1024\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";

fn stamped(tsa: &OpensslTsa, message: &[u8]) -> Vec<u8> {
    let request = TimestampRequest::new(message).expect("request");
    let reply = tsa.reply(&request.to_der().expect("DER"));
    request
        .token(&reply)
        .expect("a granted token of this request")
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn tokens_from_openssl_verify_and_bind_the_message_and_the_authority() {
    let Some(ec) = OpensslTsa::create(KeyKind::EcP256, "sha256, sha384, sha512") else {
        return;
    };
    let Some(rsa) = OpensslTsa::create(KeyKind::Rsa2048, "sha256") else {
        return;
    };
    let ec_authority = TimestampAuthority::from_file(&ec.certificate()).expect("certificate");
    let rsa_authority = TimestampAuthority::from_file(&rsa.certificate()).expect("certificate");
    assert!(
        ec_authority.subject().contains("CN=audit-layer test TSA"),
        "{}",
        ec_authority.subject()
    );
    for (tsa, authority, other) in [
        (&ec, &ec_authority, &rsa_authority),
        (&rsa, &rsa_authority, &ec_authority),
    ] {
        let token = stamped(tsa, HEAD);
        let stamp = verify_timestamp(&token, HEAD, authority).expect("the token holds");
        let age = SystemTime::now()
            .duration_since(stamp.time)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(300), "stamped {age:?} ago");
        assert_eq!(stamp.policy, "1.2.3.4.1");
        assert!(!stamp.serial.is_empty());
        // OpenSSL reads our tokens as its own: the imprint is the message's.
        tsa.openssl_verifies(HEAD, &token)
            .expect("openssl ts -verify accepts the token");

        let other_message =
            verify_timestamp(&token, b"audit.example.com/orders\n1025\n", authority);
        assert!(
            matches!(other_message, Err(TimestampError::OtherMessage(_))),
            "{other_message:?}"
        );
        let other_authority = verify_timestamp(&token, HEAD, other);
        assert!(
            matches!(other_authority, Err(TimestampError::Signature { .. })),
            "{other_authority:?}"
        );
    }

    // An answer to another request (another nonce) is not taken for this one's.
    let first = TimestampRequest::new(HEAD).expect("request");
    let second = TimestampRequest::new(HEAD).expect("request");
    let reply = ec.reply(&first.to_der().expect("DER"));
    assert!(matches!(
        second.token(&reply),
        Err(TimestampError::OtherMessage(_))
    ));
    // Nor an answer for another message.
    let reply = ec.reply(
        &TimestampRequest::new(b"another head")
            .unwrap()
            .to_der()
            .unwrap(),
    );
    assert!(first.token(&reply).is_err());
}

#[test]
fn any_changed_byte_of_a_token_outside_the_certificate_it_carries_is_refused() {
    for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
        let Some(tsa) = OpensslTsa::create(kind, "sha256") else {
            return;
        };
        every_changed_byte_is_refused(&tsa);
    }
}

fn every_changed_byte_is_refused(tsa: &OpensslTsa) {
    let authority = TimestampAuthority::from_file(&tsa.certificate()).expect("certificate");
    let token = stamped(tsa, HEAD);
    // The token carries the TSA's certificate (the request asks for it); checks use the
    // pinned one, so its bytes are left out: the rest is signed or fixed by RFC 5652.
    let der = tsa.certificate_der();
    let cert_at = find(&token, &der).expect("the token carries the certificate");
    let carried = cert_at..cert_at + der.len();
    let mut passed = Vec::new();
    for at in (0..token.len()).filter(|at| !carried.contains(at)) {
        for flip in [0x01u8, 0x80] {
            let mut changed = token.clone();
            changed[at] ^= flip;
            if verify_timestamp(&changed, HEAD, &authority).is_ok() {
                passed.push((at, flip));
            }
        }
    }
    assert!(
        passed.is_empty(),
        "changed bytes that still pass: {passed:?}"
    );
    assert!(verify_timestamp(&token, HEAD, &authority).is_ok());
}

#[test]
fn a_refusal_and_bad_input_are_clear_errors() {
    // An authority that only takes SHA-512 imprints rejects a SHA-256 request.
    let Some(tsa) = OpensslTsa::create(KeyKind::EcP256, "sha512") else {
        return;
    };
    let request = TimestampRequest::new(HEAD).expect("request");
    let refused = request.token(&tsa.reply(&request.to_der().unwrap()));
    assert!(
        matches!(refused, Err(TimestampError::Refused { status: 2, .. })),
        "{refused:?}"
    );
    for junk in [&b""[..], b"\x30\x03\x02\x01", b"not DER at all"] {
        assert!(matches!(
            request.token(junk),
            Err(TimestampError::Malformed { .. })
        ));
        let authority = TimestampAuthority::from_file(&tsa.certificate()).unwrap();
        assert!(matches!(
            verify_timestamp(junk, HEAD, &authority),
            Err(TimestampError::Malformed { .. })
        ));
        assert!(matches!(
            TimestampAuthority::from_certificate(junk),
            Err(TimestampError::Certificate(_))
        ));
    }
    let missing = TimestampAuthority::from_file(&tsa.dir().join("missing.pem"));
    assert!(matches!(missing, Err(TimestampError::Certificate(_))));
}

const ORIGIN: &str = "audit.example.com/orders";

#[tokio::test]
async fn the_follower_has_each_head_stamped_and_receipts_carry_the_proof_of_time() {
    use base64::Engine as _;
    let Some(tsa) = OpensslTsa::create(KeyKind::EcP256, "sha256") else {
        return;
    };
    let url = tsa.serve().await;
    let authority = TimestampAuthority::from_file(&tsa.certificate()).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CheckpointKey::generate().expect("key");
    let trail = AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir.path())
                .signing_key(key.clone())
                .checkpoint_every(50, Duration::from_secs(3600))
                .build(),
        )
        .follower(
            TreeFollower::builder(ORIGIN, key.clone())
                .timestamps(&url, authority.clone())
                .build()
                .expect("follower"),
        )
        .build()
        .expect("trail");
    for event in common::services::sample_events(120, Category::Request, "http.request") {
        trail.record(event).await.expect("record");
    }
    trail.shutdown().await.expect("shutdown");

    // Each signed head has its token, of the head's text, from the authority.
    let heads = signed_heads(dir.path()).expect("heads");
    assert!(heads.len() >= 2, "{heads:?}");
    let newest = newest_signed_head(dir.path()).unwrap().unwrap();
    let log = NoteVerifier::new(ORIGIN, &key.public_key()).unwrap();
    let text = TreeHead::open(&newest.note, &log).unwrap().text();
    let stamps = timestamps_of(dir.path(), newest.size).expect("timestamps");
    assert_eq!(stamps.len(), 1, "{stamps:?}");
    let token = base64::engine::general_purpose::STANDARD
        .decode(&stamps[0].token)
        .unwrap();
    tsa.openssl_verifies(text.as_bytes(), &token)
        .expect("openssl ts -verify accepts the kept token");

    // A receipt carries it, and it holds offline; a changed token or another authority
    // does not.
    let receipt = Receipt::make(dir.path(), 60).expect("receipt");
    receipt.verify(&log).expect("the receipt holds");
    let stamp = receipt.timestamped(&authority).expect("timestamped");
    assert!(stamp.authority.contains("audit-layer test TSA"));
    let mut changed = receipt.clone();
    let mut bytes = token.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    changed.timestamps = vec![base64::engine::general_purpose::STANDARD.encode(&bytes)];
    assert!(matches!(
        changed.timestamped(&authority),
        Err(ReceiptError::Untimestamped { .. })
    ));
    let Some(stranger) = OpensslTsa::create(KeyKind::EcP256, "sha256") else {
        return;
    };
    let stranger = TimestampAuthority::from_file(&stranger.certificate()).unwrap();
    assert!(receipt.timestamped(&stranger).is_err());

    // On the command line.
    use common::demo::run_audit;
    let keys = tempfile::tempdir().expect("tempdir");
    let public = keys.path().join("log.pub");
    key.save(&keys.path().join("log.key"), &public).unwrap();
    let out = keys.path().join("receipt.json");
    let (code, _, stderr) = run_audit([
        "prove",
        dir.path().to_str().unwrap(),
        "60",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let verify = |cert: &std::path::Path| {
        run_audit([
            "verify-receipt",
            out.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
            "--tsa-cert",
            cert.to_str().unwrap(),
        ])
    };
    let (code, stdout, stderr) = verify(&tsa.certificate());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("timestamped ") && stdout.contains("audit-layer test TSA"),
        "{stdout}"
    );
    // The CA's certificate is not the authority's: refused.
    let (code, stdout, _) = verify(&tsa.ca_certificate());
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("REFUSED"), "{stdout}");
}
