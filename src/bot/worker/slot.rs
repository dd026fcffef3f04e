//! A run's agent slot (`limits.concurrency`), which it gives back while it waits
//! for a person and takes again once answered.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct WorkSlot {
    slots: Arc<Semaphore>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl WorkSlot {
    pub fn new(slots: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> Self {
        Self { slots, held: Mutex::new(Some(permit)) }
    }

    /// Lets another run have the slot; the worker looks at the queue again.
    pub fn give_back(&self) {
        drop(self.held.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    /// Takes a slot again, waiting for one if every slot is busy; a no-op if held.
    pub async fn take_again(&self) {
        if self.held.lock().unwrap_or_else(PoisonError::into_inner).is_some() {
            return;
        }
        // The semaphore is never closed; without a permit the run goes on regardless.
        let permit = self.slots.clone().acquire_owned().await.ok();
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = permit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_given_back_is_free_for_another_until_taken_again() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = WorkSlot::new(slots.clone(), slots.clone().try_acquire_owned().unwrap());
        assert_eq!(slots.available_permits(), 0);
        slot.give_back();
        assert_eq!(slots.available_permits(), 1, "free while waiting");
        let other = slots.clone().try_acquire_owned().unwrap();
        let again = tokio::spawn(async move {
            slot.take_again().await;
            slot
        });
        tokio::task::yield_now().await;
        assert!(!again.is_finished(), "waits for the other run's slot");
        drop(other);
        let slot = again.await.unwrap();
        assert_eq!(slots.available_permits(), 0, "held again");
        slot.take_again().await;
        assert_eq!(slots.available_permits(), 0, "taking a held slot takes nothing more");
    }
}
