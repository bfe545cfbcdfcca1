//! `producer` and `consumer`: a pair of tasks on different CPUs joined by a bounded
//! channel. The producer sends 0, 1, 2, …; the consumer checks it receives exactly that
//! sequence and sums it. Channels live outside the tasks (a value in flight belongs to
//! neither side) and cross a swap as their own record ([`ChannelV1`], exported and
//! imported by the update layer through [`export_channels`] and [`import_channels`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use spin::Mutex;
use updater::continuity::Clause;
use updater::records::{kinds, TaskKind};

use super::{state_record, Ctx, Kind, Next};

/// Values a producer sends per step (at most).
const BATCH: usize = 4;
/// Capacity of every channel (fixed, so a channel record has a fixed size).
pub const CHANNEL_CAPACITY: usize = 64;

/// A producer's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Producer>(), version = 1)]
#[repr(C)]
pub struct ProducerV1 {
    pub channel: u32,
    pub reserved: u32,
    /// The next value to send (= values sent so far).
    pub next: u64,
}

/// A consumer's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Consumer>(), version = 1)]
#[repr(C)]
pub struct ConsumerV1 {
    pub channel: u32,
    pub reserved: u32,
    /// The value the consumer expects next (= values received so far).
    pub expected: u64,
    /// Sum of values received (wrapping).
    pub sum: u64,
    /// Values that were not the expected one.
    pub errors: u64,
}

/// A channel and the values in it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = kinds::CHANNELS, version = 1)]
#[repr(C)]
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

/// The `producer` kind.
pub struct Producer;

impl Kind for Producer {
    const ID: TaskKind = TaskKind::PRODUCER;
    const NAME: &'static str = "producer";
    type State = ProducerV1;
    /// It keeps sending into the same channel.
    const CONTINUITY: &'static [Clause] = &[Clause::Monotonic(0), Clause::Same(1)];

    fn step(state: &mut ProducerV1, _ctx: &Ctx<'_>) -> Next {
        produce(state)
    }

    /// `[next, channel, 0, 0]`.
    fn observe(s: &ProducerV1) -> [u64; 4] {
        [s.next, s.channel.into(), 0, 0]
    }
}

/// The `consumer` kind.
pub struct Consumer;

impl Kind for Consumer {
    const ID: TaskKind = TaskKind::CONSUMER;
    const NAME: &'static str = "consumer";
    type State = ConsumerV1;
    /// No value out of sequence, it keeps receiving, from the same channel.
    const CONTINUITY: &'static [Clause] = &[Clause::Zero(2), Clause::Monotonic(0), Clause::Same(3)];

    fn step(state: &mut ConsumerV1, ctx: &Ctx<'_>) -> Next {
        consume(state, ctx)
    }

    /// `[expected, sum, errors, channel]`.
    fn observe(s: &ConsumerV1) -> [u64; 4] {
        [s.expected, s.sum, s.errors, s.channel.into()]
    }
}

struct ChannelState {
    id: u32,
    values: VecDeque<u64>,
}

static CHANNELS: Mutex<Vec<ChannelState>> = Mutex::new(Vec::new());

/// Creates an empty channel and returns its id.
pub fn create_channel() -> u32 {
    let mut channels = CHANNELS.lock();
    let id = channels.iter().map(|c| c.id).max().unwrap_or(0) + 1;
    channels.push(ChannelState {
        id,
        values: VecDeque::with_capacity(CHANNEL_CAPACITY),
    });
    id
}

pub fn producer(channel: u32) -> ProducerV1 {
    ProducerV1 {
        channel,
        reserved: 0,
        next: 0,
    }
}

pub fn consumer(channel: u32) -> ConsumerV1 {
    ConsumerV1 {
        channel,
        reserved: 0,
        expected: 0,
        sum: 0,
        errors: 0,
    }
}

#[inline(never)]
pub fn produce(state: &mut ProducerV1) -> Next {
    let mut channels = CHANNELS.lock();
    if let Some(ch) = channels.iter_mut().find(|c| c.id == state.channel) {
        for _ in 0..BATCH {
            if ch.values.len() >= CHANNEL_CAPACITY {
                break;
            }
            ch.values.push_back(state.next);
            state.next += 1;
        }
    }
    Next::Period
}

#[inline(never)]
pub fn consume(state: &mut ConsumerV1, ctx: &Ctx<'_>) -> Next {
    let mut channels = CHANNELS.lock();
    if let Some(ch) = channels.iter_mut().find(|c| c.id == state.channel) {
        while let Some(v) = ch.values.pop_front() {
            if v != state.expected {
                state.errors += 1;
                log::error!(
                    "consumer #{} on {}: received {v}, expected {}",
                    ctx.task,
                    ctx.cpu,
                    state.expected
                );
            }
            state.sum = state.sum.wrapping_add(v);
            state.expected = v + 1;
        }
    }
    Next::Period
}

/// Every channel and its contents, for export.
pub fn export_channels() -> Vec<ChannelV1> {
    CHANNELS
        .lock()
        .iter()
        .map(|c| {
            let mut items = [0u64; CHANNEL_CAPACITY];
            for (slot, v) in items.iter_mut().zip(c.values.iter()) {
                *slot = *v;
            }
            ChannelV1 {
                id: c.id,
                len: c.values.len() as u32,
                items,
            }
        })
        .collect()
}

/// Replaces all channels with imported ones.
pub fn import_channels(channels: impl Iterator<Item = ChannelV1>) {
    let mut table = CHANNELS.lock();
    table.clear();
    for c in channels {
        table.push(ChannelState {
            id: c.id,
            values: c.values().iter().copied().collect(),
        });
    }
}

/// Values waiting in all channels.
pub fn in_flight() -> usize {
    CHANNELS.lock().iter().map(|c| c.values.len()).sum()
}
