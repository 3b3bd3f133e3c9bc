//! Password hashing: argon2id at the OWASP parameters (19 MiB, 2 passes, 1 lane), PHC strings.
//! Owns: hashing, verifying, the bound on concurrent hashes and the password rules. Leaves: storage.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 10;
/// Longest password accepted, in characters (bounds the work an attacker can ask for).
pub const MAX_CHARS: usize = 1024;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, String> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Why a password is refused, in French.
pub fn check_rules(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(format!("le mot de passe doit compter au moins {MIN_CHARS} caractères"));
    }
    if chars > MAX_CHARS {
        return Err(format!("le mot de passe ne peut dépasser {MAX_CHARS} caractères"));
    }
    Ok(())
}

/// Runs the hashes on blocking threads, a few at a time (each takes 19 MiB and a core for tens
/// of milliseconds; a burst of guesses must not take the whole machine).
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self { permits: Arc::new(Semaphore::new(2)) }
    }
}

impl Hasher {
    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let password = password.to_owned();
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
            argon2()?.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// True when `password` matches the PHC string `hash` (false for an unreadable hash).
    pub async fn verify(&self, password: &str, hash: &str) -> bool {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let Ok(_permit) = self.permits.acquire().await else { return false };
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else { return false };
            argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_at_owasp_parameters_and_verifies_only_its_password() {
        let hasher = Hasher::default();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse battery", &hash).await);
        assert!(!hasher.verify("correct horse batterie", &hash).await);
        assert!(!hasher.verify("x", "pas un hachage").await);
    }

    #[test]
    fn passwords_have_at_least_ten_characters() {
        assert!(check_rules("123456789").is_err());
        assert!(check_rules("éèàùçôîêâ1").is_ok(), "characters, not bytes");
    }
}
