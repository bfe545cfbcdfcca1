//! `declare_kinds!`: everything per-kind, generated from the one list of this image's
//! kinds in `tasks/mod.rs`. A kind is added by implementing [`Kind`](super::Kind) in its
//! own file and naming it in that list; nothing here changes.
//!
//! From `Variant => path::Type` lines it generates, in the calling module:
//! - [`TaskState`](super::TaskState), one variant per kind, holding its state record;
//! - `step` and `observe`, dispatching by variant (a `match`, no function pointers);
//! - `KINDS` (id, name, continuity rule), `STATE_RECORDS` (for the identity and the
//!   bootstrap), `STEPS` (each kind's converters);
//! - `Pools` (one [`Pool`](super::Pool) of states per kind: a run queue's states) and
//!   `KindIndex`;
//! - `export_states` (one record per kind: every queue's pool, one copy each),
//!   `Adopter` (hands the converted states to the queues where they stand) and
//!   `decode_all` (an exported set's states by task id);
//! - `initial_tasks` (the initialisation requirement of a kind new to the machine).

/// See the module documentation.
macro_rules! declare_kinds {
    ($($variant:ident => $kind:ty),* $(,)?) => {
        /// A task's state, by kind (the record version this image reads).
        #[derive(Clone)]
        pub enum TaskState {
            $(
                #[doc = concat!("A `", stringify!($kind), "` task.")]
                $variant(<$kind as Kind>::State),
            )*
        }

        impl TaskState {
            /// The kind of the task holding this state.
            pub fn kind(&self) -> TaskKind {
                match self {
                    $(TaskState::$variant(_) => <$kind as Kind>::ID,)*
                }
            }
        }

        /// Runs one step of a task of any kind.
        pub fn step(state: &mut TaskState, ctx: &Ctx<'_>) -> Next {
            match state {
                $(TaskState::$variant(s) => <$kind as Kind>::step(s, ctx),)*
            }
        }

        /// Four numbers that show a task's progress (each kind's `observe`).
        #[inline(never)]
        pub fn observe(state: &TaskState) -> [u64; 4] {
            match state {
                $(TaskState::$variant(s) => <$kind as Kind>::observe(s),)*
            }
        }

        /// Every kind of this image.
        pub const KINDS: &[KindInfo] = &[$(KindInfo::of::<$kind>(),)*];

        /// The state record of every kind (the identity's schema table and the
        /// bootstrap read it).
        pub const STATE_RECORDS: &[RecordDecl] = &[
            $(RecordDecl::of::<<$kind as Kind>::State>(<$kind as Kind>::OPTIONAL),)*
        ];

        /// Every kind's converters.
        pub const STEPS: &[&[Step]] = &[$(<$kind as Kind>::STEPS,)*];

        const _: () = {
            let ids = [$(<$kind as Kind>::ID.raw(),)*];
            let mut i = 0;
            while i < ids.len() {
                let mut j = 0;
                while j < i {
                    assert!(ids[i] != ids[j], "two task kinds share an id");
                    j += 1;
                }
                i += 1;
            }
        };

        /// A kind's place in [`KINDS`] (and in every per-kind table of this image).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct KindIndex(u8);

        impl KindIndex {
            /// The index, for per-kind arrays.
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }

        /// Kind ids below 256 to their index + 1 (0: not a kind of this image), so that
        /// a queue of thousands of tasks is sorted into its pools without a search.
        const KIND_INDEX: [u8; 256] = {
            let mut map = [0u8; 256];
            let mut i = 0;
            while i < KINDS.len() {
                let raw = KINDS[i].id.raw() as usize;
                if raw < 256 {
                    map[raw] = i as u8 + 1;
                }
                i += 1;
            }
            map
        };

        /// The index of `kind` in this image, if it has the kind.
        #[inline]
        pub fn kind_index(kind: TaskKind) -> Option<KindIndex> {
            match KIND_INDEX.get(kind.raw() as usize) {
                Some(0) => None,
                Some(&i) => Some(KindIndex(i - 1)),
                None => KINDS.iter().position(|k| k.id == kind).map(|i| KindIndex(i as u8)),
            }
        }

        /// The states of one run queue's tasks: one pool per kind, each in the order of
        /// that kind's tasks on the queue.
        #[allow(non_snake_case)]
        pub struct Pools {
            $($variant: Pool<<$kind as Kind>::State>,)*
        }

        impl Pools {
            /// No states.
            pub const fn new() -> Self {
                Pools {
                    $($variant: Pool::new(),)*
                }
            }

            /// Appends `state` to its kind's pool; returns where it went.
            pub fn push(&mut self, state: TaskState) -> (KindIndex, u32) {
                let mut _i = 0u8;
                $(
                    if let TaskState::$variant(s) = state {
                        return (KindIndex(_i), self.$variant.push(s) as u32);
                    }
                    _i += 1;
                )*
                unreachable!("every state is of a kind of this image")
            }

            /// A copy of the state at `at` of kind `kind`.
            ///
            /// # Panics
            /// If there is no such state (a scheduler bug).
            pub fn get(&self, kind: KindIndex, at: u32) -> TaskState {
                let mut _i = 0u8;
                $(
                    if kind.0 == _i {
                        return TaskState::$variant(self.$variant.as_slice()[at as usize].clone());
                    }
                    _i += 1;
                )*
                unreachable!("kind index {} is not of this image", kind.0)
            }

            /// Writes `state` back at `at` (it must be of kind `kind`).
            pub fn put(&mut self, kind: KindIndex, at: u32, state: TaskState) {
                let mut _i = 0u8;
                $(
                    if kind.0 == _i {
                        if let TaskState::$variant(s) = state {
                            self.$variant.as_mut_slice()[at as usize] = s;
                            return;
                        }
                    }
                    _i += 1;
                )*
                unreachable!("a state written back under another kind")
            }

            /// States of kind `kind`.
            pub fn len(&self, kind: KindIndex) -> usize {
                let mut _i = 0u8;
                $(
                    if kind.0 == _i {
                        return self.$variant.len();
                    }
                    _i += 1;
                )*
                0
            }

            /// Pools that hold states: (how many, of which where the swap into this
            /// kernel left them).
            pub fn held(&self) -> (usize, usize) {
                let held = 0 $(+ usize::from(self.$variant.len() > 0))*;
                let adopted = 0 $(+ usize::from(self.$variant.len() > 0 && self.$variant.is_adopted()))*;
                (held, adopted)
            }
        }

        /// Writes one state record per kind: the states of every pool of `pools`, in
        /// order, each pool one copy of its bytes. Tables come from `description`
        /// (this image's own).
        pub fn export_states<'p>(
            w: &mut RecordSetWriter<'_>,
            description: &Description<'_>,
            pools: impl Iterator<Item = &'p Pools> + Clone,
        ) -> Result<(), RecordSetError> {
            $(
                {
                    type S = <$kind as Kind>::State;
                    let kind = <S as Record>::KIND;
                    let flags = if <$kind as Kind>::OPTIONAL { record_flags::OPTIONAL } else { 0 };
                    let table = description
                        .record(kind)
                        .expect("this image's description has every record it writes")
                        .table;
                    let entries: usize = pools.clone().map(|p| p.$variant.len()).sum();
                    let header = RecordHeader {
                        kind,
                        schema: <S as Record>::SCHEMA,
                        flags,
                        entry_size: <S as Field>::SIZE as u32,
                        entries: entries as u32,
                        fingerprint: table.fingerprint(),
                    };
                    let each = pools.clone();
                    w.add_filled(header, table, |out| {
                        let mut at = 0;
                        for p in each {
                            let bytes = p.$variant.bytes();
                            out[at..at + bytes.len()].copy_from_slice(bytes);
                            at += bytes.len();
                        }
                    })?;
                }
            )*
            Ok(())
        }

        /// Why the states of a converted set cannot be adopted (a bug in this image
        /// or its bootstrap: the bootstrap checked the set).
        #[derive(Debug)]
        pub struct AdoptError {
            pub kind: TaskKind,
            pub error: updater::record::PlainError,
        }

        /// Hands out the states of a converted set, queue by queue, where they stand.
        #[allow(non_snake_case)]
        pub struct Adopter {
            $($variant: &'static mut [<$kind as Kind>::State],)*
        }

        impl Adopter {
            /// Takes each kind's state record out of `entries`.
            pub fn new(entries: &mut EntriesMut<'static>) -> Result<Self, AdoptError> {
                Ok(Adopter {
                    $($variant: match entries.take(<$kind as Kind>::ID.state_record()) {
                        Some((_, bytes)) => updater::record::entries_mut(bytes).map_err(|error| {
                            AdoptError { kind: <$kind as Kind>::ID, error }
                        })?,
                        None => &mut [],
                    },)*
                })
            }

            /// The next `counts[k]` states of each kind `k` (indexed by [`KindIndex`]),
            /// as one queue's pools. `None` if a kind has fewer states left.
            pub fn take(&mut self, counts: &[u32]) -> Option<Pools> {
                let mut _i = 0usize;
                $(
                    let n = counts.get(_i).copied().unwrap_or(0) as usize;
                    if self.$variant.len() < n {
                        return None;
                    }
                    _i += 1;
                )*
                let mut _i = 0usize;
                Some(Pools {
                    $($variant: {
                        let n = counts.get(_i).copied().unwrap_or(0) as usize;
                        _i += 1;
                        let (mine, rest) = core::mem::take(&mut self.$variant).split_at_mut(n);
                        self.$variant = rest;
                        Pool::Adopted(mine)
                    },)*
                })
            }
        }

        /// Every task state of `set` by task id, for `tasks` (id and kind of each task,
        /// in task-table order: the n-th task of a kind owns the n-th state).
        pub fn decode_all(
            set: &RecordSet<'_>,
            tasks: impl Iterator<Item = (u32, TaskKind)>,
        ) -> alloc::collections::BTreeMap<u32, TaskState> {
            let mut all = alloc::collections::BTreeMap::new();
            let mut next = [0usize; KINDS.len()];
            for (id, kind) in tasks {
                let Some(k) = kind_index(kind) else { continue };
                let n = next[k.get()];
                next[k.get()] += 1;
                let mut _i = 0usize;
                $(
                    if k.get() == _i {
                        if let Some(record) = set.find(<$kind as Kind>::ID.state_record()) {
                            if let Some(Ok(s)) = record.decode::<<$kind as Kind>::State>().nth(n) {
                                all.insert(id, TaskState::$variant(s));
                            }
                        }
                    }
                    _i += 1;
                )*
            }
            all
        }

        /// The first tasks of `kind`, for an initialisation requirement: calls `place`
        /// with each one's state and period.
        pub fn initial_tasks(kind: TaskKind, mut place: impl FnMut(TaskState, u32)) -> usize {
            $(
                if kind == <$kind as Kind>::ID {
                    let Some(init) = <$kind as Kind>::INITIAL else {
                        return 0;
                    };
                    for i in 0..init.tasks {
                        place(TaskState::$variant((init.state)(i)), init.period_us);
                    }
                    return init.tasks;
                }
            )*
            0
        }
    };
}

pub(crate) use declare_kinds;
