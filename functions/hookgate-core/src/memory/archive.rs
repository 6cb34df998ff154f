//! `MemoryArchive`: the archive as a map of encoded objects, for the local stack and tests.
//!
//! It stores the same bytes the S3 archive stores ([`crate::archive::encode_object`]) and reads
//! them back through the same checks, so a corrupt or foreign object is refused here as there.
//! Like an S3 lifecycle rule, it forgets objects older than the retention it is given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::archive::{
    check_owner, decode_object, encode_object_and_ref, key_for, Archive, ArchiveError, PayloadRef,
};
use crate::envelope::{Envelope, EventId};

/// Puts between two sweeps of objects past their retention.
const SWEEP_EVERY: usize = 1024;

#[derive(Debug, Default)]
struct Objects {
    by_key: HashMap<String, (Bytes, std::time::Instant)>,
    puts: usize,
}

/// An in-process archive.
#[derive(Debug, Default)]
pub struct MemoryArchive {
    objects: Mutex<Objects>,
    retention: Option<Duration>,
}

impl MemoryArchive {
    /// An empty archive that keeps everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty archive that forgets objects older than `retention` (as an S3 lifecycle
    /// expiration does), checked every so many puts.
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            retention: Some(retention),
            ..Self::default()
        }
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the raw object stored for `event_id` (tests: a damaged or foreign object).
    pub fn overwrite_raw(&self, event_id: &EventId, object: Bytes) {
        self.lock()
            .by_key
            .insert(key_for(event_id), (object, std::time::Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        // Every mutation is a single map operation: a poisoned lock is still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Archive for MemoryArchive {
    async fn put(&self, envelope: &Envelope) -> Result<PayloadRef, ArchiveError> {
        let (object, reference) = encode_object_and_ref(envelope);
        let object = Bytes::from(object);
        let mut objects = self.lock();
        objects.puts += 1;
        if let Some(retention) = self.retention {
            if objects.puts.is_multiple_of(SWEEP_EVERY) {
                objects
                    .by_key
                    .retain(|_, (_, at)| at.elapsed() <= retention);
            }
        }
        objects
            .by_key
            .insert(reference.key.clone(), (object, std::time::Instant::now()));
        Ok(reference)
    }

    async fn get(&self, event_id: &EventId) -> Result<Option<Envelope>, ArchiveError> {
        let object = self
            .lock()
            .by_key
            .get(&key_for(event_id))
            .map(|(object, _)| object.clone());
        object
            .map(|object| decode_object(object).and_then(|e| check_owner(e, event_id)))
            .transpose()
    }

    async fn exists(&self, event_id: &EventId) -> Result<bool, ArchiveError> {
        Ok(self.lock().by_key.contains_key(&key_for(event_id)))
    }

    async fn delete(&self, event_id: &EventId) -> Result<(), ArchiveError> {
        self.lock().by_key.remove(&key_for(event_id));
        Ok(())
    }
}
