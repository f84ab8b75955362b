//! Passphrase-protected private keys: PKCS#8 `ENCRYPTED PRIVATE KEY`
//! (PBES2: PBKDF2 or scrypt with AES-CBC), PEM or DER. OpenSSL's legacy
//! `Proc-Type: 4,ENCRYPTED` PEM is refused with the command that converts it.

use pkcs8::der::pem;
use pkcs8::EncryptedPrivateKeyInfo;

use super::{parse_private_key, KeyFormat, PkiError, SigningKey};

const LEGACY: &[u8] = b"Proc-Type: 4,ENCRYPTED";

/// Does `bytes` hold an encrypted key (PKCS#8 PEM or DER, or legacy PEM)?
pub fn is_encrypted_key(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, LEGACY)
        || (!contains(bytes, b"-----") && EncryptedPrivateKeyInfo::try_from(bytes).is_ok())
}

fn contains(bytes: &[u8], what: &[u8]) -> bool {
    bytes.windows(what.len()).any(|w| w == what)
}

/// A private key as [`parse_private_key`] reads it, decrypted with
/// `passphrase` if it is encrypted (an unencrypted key is taken as is).
/// Errors never contain the passphrase.
pub fn parse_private_key_with_passphrase(
    bytes: &[u8],
    passphrase: &[u8],
) -> Result<SigningKey, PkiError> {
    if contains(bytes, LEGACY) {
        return Err(PkiError::Key(
            "legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED) is not supported; \
             convert the key to PKCS#8: openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8"
                .into(),
        ));
    }
    if !is_encrypted_key(bytes) {
        return parse_private_key(bytes);
    }
    let der: Vec<u8>;
    let der_ref: &[u8] = if contains(bytes, b"-----") {
        let start = bytes
            .windows(11)
            .position(|w| w == b"-----BEGIN ")
            .unwrap_or(0);
        let (label, d) =
            pem::decode_vec(&bytes[start..]).map_err(|e| PkiError::Key(format!("PEM: {e}")))?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(PkiError::Key(format!(
                "expected PEM 'ENCRYPTED PRIVATE KEY', found '{label}'"
            )));
        }
        der = d;
        &der
    } else {
        bytes
    };
    let info = EncryptedPrivateKeyInfo::try_from(der_ref)
        .map_err(|e| PkiError::Key(format!("not a PKCS#8 encrypted key: {e}")))?;
    let plain = info.decrypt(passphrase).map_err(|e| match e {
        // pkcs5 0.7 reports a bad padding (a wrong passphrase) as either.
        pkcs8::Error::EncryptedPrivateKey(
            pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
        ) => {
            PkiError::Key("cannot decrypt: wrong passphrase".into())
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            PkiError::Key(format!(
                "unsupported key encryption (algorithm {oid}); re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8"
            ))
        }
        other => PkiError::Key(format!("cannot decrypt: {other}")),
    })?;
    // A wrong passphrase that happens to give valid padding yields garbage.
    SigningKey::from_der(plain.as_bytes(), KeyFormat::Pkcs8)
        .map_err(|_| PkiError::Key("cannot decrypt: wrong passphrase".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::der::pem::LineEnding;
    use pkcs8::pkcs5::pbes2;
    use pkcs8::PrivateKeyInfo;

    fn encrypted(pass: &str) -> (Vec<u8>, String, Vec<u8>) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = kp.serialize_der();
        let info = PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        let params =
            pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"saltsalt", &[7; 16]).unwrap();
        let doc = info.encrypt_with_params(params, pass).unwrap();
        let pem = doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).unwrap();
        (
            doc.as_bytes().to_vec(),
            pem.to_string(),
            kp.public_key_raw().to_vec(),
        )
    }

    #[test]
    fn pkcs8_pem_and_der_decrypt_with_the_right_passphrase() {
        let (der, pem, public) = encrypted("s3cret");
        assert!(is_encrypted_key(pem.as_bytes()));
        assert!(is_encrypted_key(&der));
        for bytes in [pem.as_bytes(), der.as_slice()] {
            let k = parse_private_key_with_passphrase(bytes, b"s3cret").unwrap();
            assert_eq!(k.public_key(), public.as_slice());
        }
    }

    #[test]
    fn wrong_passphrase_is_said_and_not_echoed() {
        let (_, pem, _) = encrypted("s3cret");
        let e = parse_private_key_with_passphrase(pem.as_bytes(), b"guessed-wrong")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong passphrase"), "{e}");
        assert!(!e.contains("guessed-wrong"));
    }

    #[test]
    fn without_a_passphrase_an_encrypted_key_asks_for_one() {
        let (_, pem, _) = encrypted("s3cret");
        let e = parse_private_key(pem.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("passphrase"), "{e}");
    }

    #[test]
    fn legacy_openssl_encryption_says_how_to_convert() {
        let legacy = b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(is_encrypted_key(legacy));
        let e = parse_private_key_with_passphrase(legacy, b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
    }

    #[test]
    fn a_plain_key_with_a_passphrase_is_taken_as_is() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let k = parse_private_key_with_passphrase(kp.serialize_pem().as_bytes(), b"x").unwrap();
        assert_eq!(k.public_key(), kp.public_key_raw());
    }
}
