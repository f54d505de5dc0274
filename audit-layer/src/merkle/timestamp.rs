//! RFC 3161 timestamps: a time-stamping authority's signed statement that a tree head
//! existed at a time, which neither the log's key holder nor the witnesses can give.
//!
//! The message timestamped is a head's text ([`TreeHead::text`](super::TreeHead::text)):
//! origin, size and root. A token is checked against the authority's certificate, pinned
//! by whoever checks (as the log's public key is): the signer named in the token must be
//! that certificate, its key must have signed the token's signed attributes, and those
//! must hold the digest of the `TSTInfo` whose imprint is the head's SHA-256.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use cms::cert::x509::Certificate;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Int, ObjectIdentifier, OctetString, OctetStringRef};
use der::{Decode as _, DecodePem as _, Encode as _, Tagged as _};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Why a timestamp could not be had, or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The authority's certificate could not be read.
    #[error("the time-stamping authority's certificate: {0}")]
    Certificate(String),
    /// Not DER of the structure expected.
    #[error("not an RFC 3161 {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The authority refused the request.
    #[error("the time-stamping authority refused: status {status}{text}")]
    Refused {
        /// The PKI status (2 = rejection, 3 = waiting, ...).
        status: u8,
        /// Its status text, if it gave one (with a leading `: `).
        text: String,
    },
    /// The token does not stamp this message (another imprint or nonce).
    #[error("the timestamp is not of this message: {0}")]
    OtherMessage(&'static str),
    /// The token is not signed by the authority given.
    #[error("the timestamp is not signed by {authority}: {reason}")]
    Signature {
        /// The authority's subject.
        authority: String,
        /// What did not hold.
        reason: String,
    },
}

fn malformed(what: &'static str) -> impl FnOnce(der::Error) -> TimestampError {
    move |e| TimestampError::Malformed {
        what,
        reason: e.to_string(),
    }
}

/// A time-stamping authority's certificate, pinned by whoever checks its timestamps.
#[derive(Clone)]
pub struct TimestampAuthority {
    certificate: Certificate,
    subject: String,
}

impl fmt::Debug for TimestampAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimestampAuthority")
            .field(&self.subject)
            .finish()
    }
}

impl TimestampAuthority {
    /// The authority whose certificate is `bytes`, in PEM or DER.
    pub fn from_certificate(bytes: &[u8]) -> Result<Self, TimestampError> {
        let certificate = if bytes.starts_with(b"-----BEGIN") {
            Certificate::from_pem(bytes)
        } else {
            Certificate::from_der(bytes)
        }
        .map_err(|e| TimestampError::Certificate(e.to_string()))?;
        let subject = certificate.tbs_certificate.subject.to_string();
        Ok(Self {
            certificate,
            subject,
        })
    }

    /// The authority whose certificate is in the file at `path` (PEM or DER).
    pub fn from_file(path: &Path) -> Result<Self, TimestampError> {
        let in_file = |reason: &dyn fmt::Display| {
            TimestampError::Certificate(format!("{}: {reason}", path.display()))
        };
        let bytes = std::fs::read(path).map_err(|e| in_file(&e))?;
        Self::from_certificate(&bytes).map_err(|e| match e {
            TimestampError::Certificate(reason) => in_file(&reason),
            other => other,
        })
    }

    /// The certificate's subject, as `CN=...,O=...`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    fn names(&self, sid: &SignerIdentifier) -> bool {
        let tbs = &self.certificate.tbs_certificate;
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                id.issuer == tbs.issuer && id.serial_number == tbs.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                tbs.extensions.iter().flatten().any(|extension| {
                    // SubjectKeyIdentifier (2.5.29.14): an OCTET STRING inside the value.
                    extension.extn_id == ObjectIdentifier::new_unwrap("2.5.29.14")
                        && OctetStringRef::from_der(extension.extn_value.as_bytes())
                            .is_ok_and(|inner| inner.as_bytes() == ski.0.as_bytes())
                })
            }
        }
    }

    /// Checks `signature` over `message` with the certificate's key, hashing with `digest`,
    /// the signature algorithm the token names being the one its key and digest make.
    fn check(
        &self,
        digest: ObjectIdentifier,
        named: ObjectIdentifier,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        use ring::signature as sig;
        let spki = &self.certificate.tbs_certificate.subject_public_key_info;
        let key = spki.subject_public_key.raw_bytes();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let names = match (spki.algorithm.oid, digest) {
            (RSA_ENCRYPTION, ID_SHA256) => [RSA_ENCRYPTION, SHA256_WITH_RSA],
            (RSA_ENCRYPTION, ID_SHA384) => [RSA_ENCRYPTION, SHA384_WITH_RSA],
            (RSA_ENCRYPTION, ID_SHA512) => [RSA_ENCRYPTION, SHA512_WITH_RSA],
            (EC_PUBLIC_KEY, ID_SHA256) => [ECDSA_WITH_SHA256; 2],
            (EC_PUBLIC_KEY, ID_SHA384) => [ECDSA_WITH_SHA384; 2],
            (key, _) => [key; 2],
        };
        if !names.contains(&named) {
            return Err(format!(
                "signature algorithm {named} for a {} key with digest {digest}",
                spki.algorithm.oid
            ));
        }
        let algorithm: &dyn sig::VerificationAlgorithm = match (spki.algorithm.oid, curve, digest) {
            (RSA_ENCRYPTION, _, ID_SHA256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (RSA_ENCRYPTION, _, ID_SHA384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (RSA_ENCRYPTION, _, ID_SHA512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (EC_PUBLIC_KEY, Some(P256), ID_SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
            (EC_PUBLIC_KEY, Some(P256), ID_SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
            (EC_PUBLIC_KEY, Some(P384), ID_SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
            (EC_PUBLIC_KEY, Some(P384), ID_SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
            (ED25519, _, _) => &sig::ED25519,
            (key, curve, digest) => {
                return Err(format!(
                    "unsupported key {key} (curve {curve:?}) with digest {digest}: RSA, \
                         ECDSA P-256/P-384 and Ed25519 are"
                ));
            }
        };
        sig::UnparsedPublicKey::new(algorithm, key)
            .verify(message, signature)
            .map_err(|_| "the signature does not verify".to_owned())
    }
}

/// What a valid timestamp says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timestamp {
    /// When the authority stamped the message (`genTime`).
    pub time: SystemTime,
    /// The token's serial number at the authority, in hex.
    pub serial: String,
    /// The authority's policy the token was issued under.
    pub policy: String,
    /// The authority's subject.
    pub authority: String,
}

/// A request for a timestamp of one message (RFC 3161 `TimeStampReq`, SHA-256 imprint, a
/// random nonce, the authority's certificate asked for).
#[derive(Debug, Clone)]
pub struct TimestampRequest {
    imprint: [u8; 32],
    nonce: Int,
}

impl TimestampRequest {
    /// The request for `message`.
    pub fn new(message: &[u8]) -> Result<Self, TimestampError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| TimestampError::Malformed {
            what: "request",
            reason: format!("no random nonce: {e}"),
        })?;
        // An unsigned 63-bit value, DER-encoded by der itself (minimal, positive).
        let nonce = u64::from_be_bytes(bytes) >> 1;
        let nonce = nonce
            .to_der()
            .and_then(|der| Int::from_der(&der))
            .map_err(malformed("request"))?;
        Ok(Self {
            imprint: Sha256::digest(message).into(),
            nonce,
        })
    }

    /// The request's DER, to POST as `application/timestamp-query`.
    pub fn to_der(&self) -> Result<Vec<u8>, TimestampError> {
        TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
                    oid: ID_SHA256,
                    parameters: None,
                },
                hashed_message: OctetString::new(self.imprint.to_vec())
                    .map_err(malformed("request"))?,
            },
            req_policy: None,
            nonce: Some(self.nonce.clone()),
            cert_req: true,
            extensions: None,
        }
        .to_der()
        .map_err(malformed("request"))
    }

    /// The token in the authority's answer (`TimeStampResp` DER), once its status grants
    /// it and it stamps this request's message and nonce. Its signature is checked by
    /// [`verify_timestamp`].
    pub fn token(&self, response: &[u8]) -> Result<Vec<u8>, TimestampError> {
        let response = TimeStampResp::from_der(response).map_err(malformed("response"))?;
        let status = response.status.status as u8;
        if status > 1 {
            let text = response
                .status
                .status_string
                .iter()
                .flat_map(|strings| strings.iter())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(TimestampError::Refused {
                status,
                text: if text.is_empty() {
                    text
                } else {
                    format!(": {text}")
                },
            });
        }
        let token = response
            .time_stamp_token
            .ok_or(TimestampError::Malformed {
                what: "response",
                reason: "granted, without a token".to_owned(),
            })?
            .to_der()
            .map_err(malformed("response"))?;
        let (_, info) = open_token(&token)?;
        if info.nonce.as_ref() != Some(&self.nonce) {
            return Err(TimestampError::OtherMessage("another nonce"));
        }
        check_imprint(&info, &self.imprint)?;
        Ok(token)
    }
}

/// Checks that `token` (a `TimeStampToken`, DER) stamps `message` and is signed by
/// `authority`; what it says.
pub fn verify_timestamp(
    token: &[u8],
    message: &[u8],
    authority: &TimestampAuthority,
) -> Result<Timestamp, TimestampError> {
    let (signed, info) = open_token(token)?;
    check_imprint(&info, &Sha256::digest(message).into())?;
    let refuse = |reason: String| TimestampError::Signature {
        authority: authority.subject.clone(),
        reason,
    };
    let mut signers = signed.signer_infos.0.iter();
    let (Some(signer), None) = (signers.next(), signers.next()) else {
        return Err(refuse("a token has one signer".to_owned()));
    };
    if !authority.names(&signer.sid) {
        return Err(refuse("it names another signer".to_owned()));
    }
    check_unsigned_fields(&signed, signer).map_err(refuse)?;
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .map(|content| content.value())
        .unwrap_or_default();
    let attributes = check_signed_attributes(signer, content).map_err(refuse)?;
    authority
        .check(
            signer.digest_alg.oid,
            signer.signature_algorithm.oid,
            &attributes,
            signer.signature.as_bytes(),
        )
        .map_err(refuse)?;
    Ok(Timestamp {
        time: info.gen_time.to_system_time(),
        serial: hex::encode(info.serial_number.as_bytes()),
        policy: info.policy.to_string(),
        authority: authority.subject.clone(),
    })
}

/// The token's signed data and the `TSTInfo` it carries.
fn open_token(token: &[u8]) -> Result<(SignedData, TstInfo), TimestampError> {
    let info = ContentInfo::from_der(token).map_err(malformed("token"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(TimestampError::Malformed {
            what: "token",
            reason: format!("content type {}, not signed data", info.content_type),
        });
    }
    let signed: SignedData = info.content.decode_as().map_err(malformed("token"))?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(TimestampError::Malformed {
            what: "token",
            reason: "it signs something other than a TSTInfo".to_owned(),
        });
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .filter(|content| content.tag() == der::Tag::OctetString)
        .ok_or(TimestampError::Malformed {
            what: "token",
            reason: "no TSTInfo in an OCTET STRING".to_owned(),
        })?;
    let info = TstInfo::from_der(content.value()).map_err(malformed("TSTInfo"))?;
    Ok((signed, info))
}

fn check_imprint(info: &TstInfo, imprint: &[u8; 32]) -> Result<(), TimestampError> {
    if info.message_imprint.hash_algorithm.oid != ID_SHA256 {
        return Err(TimestampError::OtherMessage(
            "an imprint other than SHA-256",
        ));
    }
    if info.message_imprint.hashed_message.as_bytes() != imprint {
        return Err(TimestampError::OtherMessage("another imprint"));
    }
    Ok(())
}

/// The fields no signature covers hold only what RFC 5652 has them hold for this signer,
/// so that nothing in a token can change and still pass.
fn check_unsigned_fields(signed: &SignedData, signer: &SignerInfo) -> Result<(), String> {
    use cms::content_info::CmsVersion;
    if signed.version != CmsVersion::V3 {
        return Err(format!(
            "signed data of version {:?}, not 3",
            signed.version
        ));
    }
    let version = match signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(_) => CmsVersion::V1,
        SignerIdentifier::SubjectKeyIdentifier(_) => CmsVersion::V3,
    };
    if signer.version != version {
        return Err(format!("a signer of version {:?}", signer.version));
    }
    if !signed
        .digest_algorithms
        .iter()
        .any(|alg| alg == &signer.digest_alg)
    {
        return Err("the signer's digest is not among the token's".to_owned());
    }
    // Hash and signature algorithms here take no parameters, or NULL.
    let plain = |alg: &x509_cert::spki::AlgorithmIdentifierOwned| {
        alg.parameters
            .as_ref()
            .is_none_or(|p| p.tag() == der::Tag::Null && p.value().is_empty())
    };
    let algorithms = signed.digest_algorithms.iter();
    if !algorithms
        .chain([&signer.digest_alg, &signer.signature_algorithm])
        .all(plain)
    {
        return Err("an algorithm with parameters".to_owned());
    }
    Ok(())
}

/// The signed attributes name a TSTInfo and hold the digest of the one carried (RFC 5652,
/// §5.4), so the signature over them covers it; their DER, which the signature is over.
fn check_signed_attributes(signer: &SignerInfo, content: &[u8]) -> Result<Vec<u8>, String> {
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or("a token's signer has signed attributes")?;
    let only_value = |oid: ObjectIdentifier| {
        let mut found = attributes.iter().filter(|attr| attr.oid == oid);
        match (found.next(), found.next()) {
            (Some(attr), None) if attr.values.len() == 1 => Ok(attr.values.get(0).cloned()),
            _ => Err(format!("one {oid} attribute of one value")),
        }
    };
    let content_type: ObjectIdentifier = only_value(ID_CONTENT_TYPE)?
        .and_then(|value| value.decode_as().ok())
        .ok_or("a content type attribute")?;
    if content_type != ID_CT_TST_INFO {
        return Err(format!("signed as content type {content_type}"));
    }
    let signed_digest: OctetString = only_value(ID_MESSAGE_DIGEST)?
        .and_then(|value| value.decode_as().ok())
        .ok_or("a message digest attribute")?;
    let digest = match signer.digest_alg.oid {
        ID_SHA256 => Sha256::digest(content).to_vec(),
        ID_SHA384 => Sha384::digest(content).to_vec(),
        ID_SHA512 => Sha512::digest(content).to_vec(),
        other => return Err(format!("unsupported digest {other}")),
    };
    if signed_digest.as_bytes() != digest {
        return Err("the signed digest is not the TSTInfo's".to_owned());
    }
    attributes.to_der().map_err(|e| e.to_string())
}
