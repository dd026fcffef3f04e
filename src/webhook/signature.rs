//! Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Checks a hex HMAC-SHA256 signature (GitHub's value without its `sha256=`
/// prefix, or Gitea's and Forgejo's bare hex). Empty or malformed values fail.
pub fn verify(secret: &SecretString, body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    if expected.is_empty() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Whether `hex_signature` could be an HMAC-SHA256 at all: 32 bytes in hex.
pub fn is_well_formed(hex_signature: &str) -> bool {
    hex::decode(hex_signature.trim()).is_ok_and(|bytes| bytes.len() == 32)
}

/// Signs `body` the way the forges do: lower-case hex HMAC-SHA256.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_published_vector_verifies() {
        let secret = SecretString::from("It's a Secret to Everybody");
        let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify(&secret, b"Hello, World!", sig));
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), sig);
        assert!(!verify(&secret, b"Hello, World?", sig));
        assert!(!verify(&secret, b"Hello, World!", ""));
        assert!(!verify(&secret, b"Hello, World!", "zz"));
        assert!(!verify(&secret, b"Hello, World!", &sig[..62]));
        assert!(is_well_formed(sig), "control");
        for bad in ["", "zz", &sig[..62], &format!("{sig}00")] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
