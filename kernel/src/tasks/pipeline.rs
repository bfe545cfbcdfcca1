//! `producer` and `consumer`: a pair of tasks on different CPUs joined by a bounded
//! channel. The producer sends 0, 1, 2, …; the consumer checks it receives exactly that
//! sequence and sums it. Channels live outside the tasks (a value in flight belongs to
//! neither side) and cross a swap as their own record.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use spin::Mutex;
use updater::records::pipeline::CHANNEL_CAPACITY;

use crate::sched::TaskId;
use crate::schema::{Channel, Consumer, Producer};
use crate::tasks::Next;

/// Values a producer sends per step (at most).
const BATCH: usize = 4;

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

pub fn producer(channel: u32) -> Producer {
    Producer { channel, next: 0 }
}

pub fn consumer(channel: u32) -> Consumer {
    Consumer {
        channel,
        expected: 0,
        sum: 0,
        errors: 0,
    }
}

#[inline(never)]
pub fn produce(state: &mut Producer) -> Next {
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
pub fn consume(state: &mut Consumer, id: TaskId) -> Next {
    let mut channels = CHANNELS.lock();
    if let Some(ch) = channels.iter_mut().find(|c| c.id == state.channel) {
        while let Some(v) = ch.values.pop_front() {
            if v != state.expected {
                state.errors += 1;
                log::error!("consumer {id}: received {v}, expected {}", state.expected);
            }
            state.sum = state.sum.wrapping_add(v);
            state.expected = v + 1;
        }
    }
    Next::Period
}

/// Every channel and its contents, for export.
pub fn export_channels() -> Vec<Channel> {
    CHANNELS
        .lock()
        .iter()
        .map(|c| {
            let mut items = [0u64; CHANNEL_CAPACITY];
            for (slot, v) in items.iter_mut().zip(c.values.iter()) {
                *slot = *v;
            }
            Channel {
                id: c.id,
                len: c.values.len() as u32,
                items,
            }
        })
        .collect()
}

/// Replaces all channels with imported ones.
pub fn import_channels(channels: &[Channel]) {
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
