//! Which schema version of each hand-off record this kernel reads and writes.
//!
//! This is the one place where build variants change data layouts; everything else
//! uses these names. The versions are also declared in the image's identity
//! (`identity.rs`), which is what an older kernel checks before accepting this image.

use updater::records::{counter, heartbeat, lcg, pipeline, service, task_table};

#[cfg(all(feature = "v2", feature = "v3"))]
compile_error!("features `v2` and `v3` are different images; build one at a time");

/// A task-table entry.
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
pub type TaskEntry = task_table::V1;
#[cfg(any(feature = "v2", feature = "broken"))]
pub type TaskEntry = task_table::V2;
#[cfg(feature = "v3")]
pub type TaskEntry = task_table::V3;

/// A counter's state.
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
pub type Counter = counter::V1;
#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
pub type Counter = counter::V2;

/// An LCG's state (one layout; the rule changed in v2).
pub type Lcg = lcg::V1;
/// The LCG step rule this image applies.
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
pub const LCG_RULE: lcg::Rule = lcg::RULE_1;
#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
pub const LCG_RULE: lcg::Rule = lcg::RULE_2;

pub type Producer = pipeline::ProducerV1;
pub type Consumer = pipeline::ConsumerV1;
pub type Channel = pipeline::ChannelV1;
pub type Heartbeat = heartbeat::V1;
pub type Service = service::V1;
#[cfg(not(any(feature = "v3", feature = "patch-c")))]
pub type Ticker = updater::records::ticker::V1;
/// The `patch-c` variant adds a field to the ticker's state (a layout change a hotpatch
/// cannot carry).
#[cfg(feature = "patch-c")]
pub type Ticker = updater::records::ticker::V2;
#[cfg(feature = "v3")]
pub type Table = updater::records::table::V1;
