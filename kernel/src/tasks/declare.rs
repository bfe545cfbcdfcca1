//! `declare_kinds!`: everything per-kind, generated from the one list of this image's
//! kinds in `tasks/mod.rs`. A kind is added by implementing [`Kind`](super::Kind) in its
//! own file and naming it in that list; nothing here changes.
//!
//! From `Variant => path::Type` lines it generates, in the calling module:
//! - [`TaskState`](super::TaskState), one variant per kind, holding its state record;
//! - `step` and `observe`, dispatching by variant (a `match`, no function pointers);
//! - `KINDS` (id, name, continuity rule), `STATE_RECORDS` (for the identity and the
//!   bootstrap), `STEPS` (each kind's converters);
//! - `export_states` (one record per kind, tasks in the order given), `Importer` (takes
//!   each task's state back in that order) and `decode_all` (by task id);
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

        /// Writes one state record per kind: the states of `tasks` (in their order) of
        /// that kind, each keyed by its task id.
        pub fn export_states<'a, I>(
            w: &mut RecordSetWriter<'_>,
            tasks: I,
        ) -> Result<(), RecordSetError>
        where
            I: Iterator<Item = (u32, &'a TaskState)> + Clone,
        {
            $(
                {
                    type S = <$kind as Kind>::State;
                    let flags = if <$kind as Kind>::OPTIONAL { record_flags::OPTIONAL } else { 0 };
                    let mut states = tasks.clone().filter_map(|(id, s)| match s {
                        TaskState::$variant(state) => Some((id, state)),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    });
                    let count = states.clone().count();
                    w.add_keyed::<S>(flags, count, |_| match states.next() {
                        Some((id, state)) => (id, state.clone()),
                        None => unreachable!("counted above"),
                    })?;
                }
            )*
            Ok(())
        }

        /// Takes the states of a converted set back, one per task, in the order they
        /// were exported.
        #[allow(non_snake_case)]
        pub struct Importer<'a> {
            $($variant: States<'a, <$kind as Kind>::State>,)*
        }

        impl<'a> Importer<'a> {
            /// Ready to take the states of `set`.
            pub fn new(set: &RecordSet<'a>) -> Self {
                Importer {
                    $($variant: States::new(set.find(<$kind as Kind>::ID.state_record())),)*
                }
            }

            /// The next state of `kind`, which must belong to task `id`; `None` if this
            /// image has no such kind or the state is not that task's.
            pub fn take(&mut self, kind: TaskKind, id: u32) -> Option<TaskState> {
                $(
                    if kind == <$kind as Kind>::ID {
                        return self.$variant.take(id).map(TaskState::$variant);
                    }
                )*
                None
            }
        }

        /// Every task state of `set`, by task id.
        pub fn decode_all(set: &RecordSet<'_>) -> alloc::collections::BTreeMap<u32, TaskState> {
            let mut all = alloc::collections::BTreeMap::new();
            $(
                if let Some(record) = set.find(<$kind as Kind>::ID.state_record()) {
                    for k in record.decode_keyed::<<$kind as Kind>::State>().flatten() {
                        all.insert(k.task, TaskState::$variant(k.state));
                    }
                }
            )*
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

/// One kind's states in a converted set, taken in order.
pub struct States<'a, S> {
    record: Option<updater::recordset::RecordRef<'a>>,
    next: usize,
    _state: core::marker::PhantomData<S>,
}

impl<'a, S: updater::record::Record> States<'a, S> {
    pub fn new(record: Option<updater::recordset::RecordRef<'a>>) -> Self {
        States {
            record,
            next: 0,
            _state: core::marker::PhantomData,
        }
    }

    /// The next state, if it is task `id`'s.
    pub fn take(&mut self, id: u32) -> Option<S> {
        let record = self.record?;
        if self.next >= record.header.entries as usize {
            return None;
        }
        let entry = record.entry(self.next);
        self.next += 1;
        let key = updater::recordset::key_of(entry).ok()?;
        let state = S::decode(entry.get(updater::recordset::KEY..)?).ok()?;
        (key == id).then_some(state)
    }
}
