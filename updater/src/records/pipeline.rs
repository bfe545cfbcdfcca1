//! State of the producer/consumer pair and the channel between them.
//!
//! A producer sends 0, 1, 2, … into a bounded channel; a consumer, on another CPU,
//! checks each value is the one it expects and keeps their sum. The channel's contents
//! cross a swap as their own record, so no value is lost or duplicated.

use super::{kinds, RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

/// Capacity of every channel (fixed, so a channel record has a fixed size).
pub const CHANNEL_CAPACITY: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerV1 {
    pub channel: u32,
    /// The next value to send (= values sent so far).
    pub next: u64,
}

impl StateRecord for ProducerV1 {
    const KIND: RecordKind = TaskKind::PRODUCER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 16;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.channel);
        w.u32(0);
        w.u64(self.next);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let channel = r.u32()?;
        r.skip(4)?;
        Ok(ProducerV1 {
            channel,
            next: r.u64()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerV1 {
    pub channel: u32,
    /// The value the consumer expects next (= values received so far).
    pub expected: u64,
    /// Sum of values received (wrapping).
    pub sum: u64,
    /// Values that were not the expected one.
    pub errors: u64,
}

impl StateRecord for ConsumerV1 {
    const KIND: RecordKind = TaskKind::CONSUMER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 32;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.channel);
        w.u32(0);
        w.u64(self.expected);
        w.u64(self.sum);
        w.u64(self.errors);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let channel = r.u32()?;
        r.skip(4)?;
        Ok(ConsumerV1 {
            channel,
            expected: r.u64()?,
            sum: r.u64()?,
            errors: r.u64()?,
        })
    }
}

/// A channel and the values in it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelV1 {
    pub id: u32,
    pub len: u32,
    pub items: [u64; CHANNEL_CAPACITY],
}

impl ChannelV1 {
    /// The values in the channel.
    pub fn values(&self) -> &[u64] {
        &self.items[..(self.len as usize).min(CHANNEL_CAPACITY)]
    }
}

impl StateRecord for ChannelV1 {
    const KIND: RecordKind = kinds::CHANNELS;
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 8 + 8 * CHANNEL_CAPACITY;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.id);
        w.u32(self.len);
        for v in self.items {
            w.u64(v);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.u32()?;
        let len = r.u32()?.min(CHANNEL_CAPACITY as u32);
        let mut items = [0u64; CHANNEL_CAPACITY];
        for v in items.iter_mut() {
            *v = r.u64()?;
        }
        Ok(ChannelV1 { id, len, items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encodings_round_trip(ch: u32, a: u64, b: u64, c: u64, len in 0u32..=64, fill: u64) {
            round_trip(&ProducerV1 { channel: ch, next: a });
            round_trip(&ConsumerV1 { channel: ch, expected: a, sum: b, errors: c });
            let mut items = [0u64; CHANNEL_CAPACITY];
            for (i, v) in items.iter_mut().enumerate().take(len as usize) { *v = fill.wrapping_add(i as u64); }
            round_trip(&ChannelV1 { id: ch, len, items });
        }
    }
}
