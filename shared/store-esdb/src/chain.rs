//! The chain witness: the hash chain over `$all` in commit order, computed
//! after commit (several writers may append at once), with checkpoints
//! (position, hash, event count, signature) appended to a system stream
//! that `verify_chain` compares against.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use eventstore::StreamPosition;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tongban_store::chain::ChainLink;
use tongban_store::{
    ChainHash, ChainReport, Direction, ExpectedRevision, Position, PositionRange, ReadFrom,
    RecordedEvent, StoreError,
};

use crate::store::{Inner, PAGE};

/// The system stream chain checkpoints are appended to (writing it needs an
/// administrator's credentials on the node). The store hides it from reads
/// and leaves it out of the chain.
pub const CHECKPOINT_STREAM: &str = "$tongban-chain";
/// Event type of a chain checkpoint.
pub const CHECKPOINT_EVENT_TYPE: &str = "ChainCheckpointed.v1";

pub(crate) fn is_witness_event(event: &RecordedEvent) -> bool {
    event.stream.as_str() == CHECKPOINT_STREAM
}

/// One chain checkpoint: where the chain stood, signed when a key is set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    position: u64,
    hash: String,
    events: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(default, rename = "publicKey", skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

#[derive(Default)]
struct State {
    hashes: BTreeMap<u64, ChainHash>,
    last: Option<(Position, ChainHash)>,
    events: u64,
    checkpointed_at: u64,
}

pub(crate) struct ChainWitness {
    state: Mutex<State>,
    checkpoint_every: u64,
    signer: Option<SigningKey>,
}

fn link_hash(event: &RecordedEvent, previous: &ChainHash) -> ChainHash {
    ChainLink {
        position: event.position,
        stream: event.stream.as_str(),
        revision: event.revision,
        id: event.id.as_bytes(),
        event_type: &event.event_type,
        data: &event.data,
        metadata: &event.metadata,
        recorded_at_micros: event.recorded_at_micros(),
    }
    .hash(previous)
}

fn signed_bytes(position: u64, hash: &ChainHash) -> Vec<u8> {
    let mut bytes = b"tongban-chain-checkpoint-v1".to_vec();
    bytes.extend_from_slice(&position.to_be_bytes());
    bytes.extend_from_slice(&hash.0);
    bytes
}

/// Reads `$all` forwards in pages after `after` (exclusive), witness
/// checkpoints left out, calling `each` until it returns false.
async fn scan_after(
    inner: &Inner,
    after: Option<Position>,
    mut each: impl FnMut(RecordedEvent) -> bool,
) -> Result<(), StoreError> {
    let mut cursor = after.map_or(StreamPosition::Start, StreamPosition::Position);
    let mut skip = after;
    loop {
        let page = inner
            .read_all_page(Direction::Forwards, cursor, PAGE)
            .await?;
        let fetched = page.len();
        let Some(last) = page.last().map(|e| e.position) else {
            return Ok(());
        };
        for event in page {
            if Some(event.position) == skip || is_witness_event(&event) {
                continue;
            }
            if !each(event) {
                return Ok(());
            }
        }
        if fetched < PAGE {
            return Ok(());
        }
        cursor = StreamPosition::Position(last);
        skip = Some(last);
    }
}

impl ChainWitness {
    pub fn new(checkpoint_every: u64, signer: Option<SigningKey>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            checkpoint_every: checkpoint_every.max(1),
            signer,
        }
    }

    /// Hashes `$all` up to at least `position`, appending a checkpoint when
    /// enough new events were hashed.
    pub async fn ensure_through(
        &self,
        inner: &Inner,
        position: Position,
    ) -> Result<(), StoreError> {
        let due = {
            let mut state = self.state.lock().await;
            if state.last.is_some_and(|(p, _)| p >= position) {
                return Ok(());
            }
            let state = &mut *state;
            let after = state.last.map(|(p, _)| p);
            let mut previous = state.last.map_or(ChainHash::GENESIS, |(_, h)| h);
            let every = self.checkpoint_every;
            let mut due = Vec::new();
            scan_after(inner, after, |event| {
                let hash = link_hash(&event, &previous);
                state.hashes.insert(event.position.0, hash);
                state.last = Some((event.position, hash));
                state.events += 1;
                previous = hash;
                // A checkpoint every `every` events, at the event that
                // completes the count.
                if state.events >= state.checkpointed_at + every {
                    state.checkpointed_at = state.events;
                    due.push((event.position, hash, state.events));
                }
                true
            })
            .await?;
            due
        };
        for (position, hash, events) in due {
            if let Err(e) = self.append_checkpoint(inner, position, hash, events).await {
                tracing::warn!(%e, "failed to append a chain checkpoint");
            }
        }
        Ok(())
    }

    pub async fn hash_of(
        &self,
        inner: &Inner,
        position: Position,
    ) -> Result<ChainHash, StoreError> {
        if let Some(hash) = self.state.lock().await.hashes.get(&position.0) {
            return Ok(*hash);
        }
        self.ensure_through(inner, position).await?;
        self.state
            .lock()
            .await
            .hashes
            .get(&position.0)
            .copied()
            .ok_or_else(|| StoreError::Corruption {
                position,
                reason: "the event is not in the hash chain of $all".into(),
            })
    }

    async fn append_checkpoint(
        &self,
        inner: &Inner,
        position: Position,
        hash: ChainHash,
        events: u64,
    ) -> Result<(), StoreError> {
        let checkpoint = Checkpoint {
            position: position.0,
            hash: hash.to_hex(),
            events,
            signature: self
                .signer
                .as_ref()
                .map(|k| hex::encode(k.sign(&signed_bytes(position.0, &hash)).to_bytes())),
            public_key: self
                .signer
                .as_ref()
                .map(|k| hex::encode(k.verifying_key().to_bytes())),
        };
        let client_event = eventstore::EventData::json(CHECKPOINT_EVENT_TYPE, &checkpoint)
            .map_err(|e| StoreError::InvalidJson {
                index: 0,
                field: "data",
                reason: e.to_string(),
            })?
            .id(uuid::Uuid::new_v4());
        inner
            .append_raw(CHECKPOINT_STREAM, ExpectedRevision::Any, vec![client_event])
            .await?;
        tracing::debug!(position = %position, %hash, events, "chain checkpoint appended");
        Ok(())
    }

    async fn checkpoints(&self, inner: &Inner) -> Result<Vec<(Position, Checkpoint)>, StoreError> {
        let events = match inner
            .read_stream_raw(
                CHECKPOINT_STREAM,
                Direction::Forwards,
                ReadFrom::Start,
                usize::MAX,
            )
            .await
        {
            Ok(events) => events,
            Err(StoreError::StreamNotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(events
            .into_iter()
            .filter_map(|e| {
                let checkpoint = serde_json::from_slice::<Checkpoint>(&e.data).ok()?;
                Some((e.position, checkpoint))
            })
            .collect())
    }

    /// Recomputes the chain from the start of `$all` and compares it with
    /// the hashes handed out so far and with every stored checkpoint.
    pub async fn verify(
        &self,
        inner: &Inner,
        range: PositionRange,
    ) -> Result<ChainReport, StoreError> {
        let mut report = ChainReport {
            events_checked: 0,
            first: None,
            last: None,
            last_hash: None,
        };
        let mut recomputed = BTreeMap::new();
        let mut previous = ChainHash::GENESIS;
        let to = range.to;
        scan_after(inner, None, |event| {
            if to.is_some_and(|to| event.position > to) {
                return false;
            }
            let hash = link_hash(&event, &previous);
            previous = hash;
            recomputed.insert(event.position.0, hash);
            if range.from.is_none_or(|from| event.position >= from) {
                report.events_checked += 1;
                report.first.get_or_insert(event.position);
                report.last = Some(event.position);
                report.last_hash = Some(hash);
            }
            true
        })
        .await?;
        {
            let state = self.state.lock().await;
            for (position, hash) in &recomputed {
                if let Some(known) = state.hashes.get(position) {
                    if known != hash {
                        return Err(StoreError::Corruption {
                            position: Position(*position),
                            reason: format!(
                                "the event changed since it was read: hash {hash} was {known}"
                            ),
                        });
                    }
                }
            }
        }
        let verifying = self.signer.as_ref().map(SigningKey::verifying_key);
        for (_, checkpoint) in self.checkpoints(inner).await? {
            let Some(hash) = recomputed.get(&checkpoint.position) else {
                continue;
            };
            let position = Position(checkpoint.position);
            if hash.to_hex() != checkpoint.hash {
                return Err(StoreError::Corruption {
                    position,
                    reason: format!(
                        "the chain checkpoint says {} but the log hashes to {hash}",
                        checkpoint.hash
                    ),
                });
            }
            if let (Some(key), Some(signature)) = (verifying, checkpoint.signature.as_ref()) {
                let valid = hex::decode(signature)
                    .ok()
                    .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
                    .is_some_and(|s| {
                        key.verify_strict(&signed_bytes(checkpoint.position, hash), &s)
                            .is_ok()
                    });
                if !valid {
                    return Err(StoreError::Corruption {
                        position,
                        reason: "the chain checkpoint's signature does not verify".into(),
                    });
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_as_json() {
        let c = Checkpoint {
            position: 42,
            hash: ChainHash([7; 32]).to_hex(),
            events: 10,
            signature: None,
            public_key: None,
        };
        let value = serde_json::to_value(&c).expect("serializable");
        let back: Checkpoint = serde_json::from_value(value).expect("parses");
        assert_eq!(back, c);
    }
}
