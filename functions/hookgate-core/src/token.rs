//! Random tokens: the claim, lease and ticket tokens that say which attempt owns a ledger row,
//! and the ids the in-memory backends make up.
//!
//! They are version-4 UUIDs, as before, drawn from the thread's CSPRNG (`rand::rng()`, seeded
//! once from the OS) rather than `Uuid::new_v4()`, which asks the kernel (`getrandom`) on every
//! call: a system call per event in the receiver and per record in the processor.

use uuid::Uuid;

/// A fresh random version-4 UUID.
pub fn uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_version_4_and_differ() {
        let (a, b) = (uuid(), uuid());
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 36);
    }
}
