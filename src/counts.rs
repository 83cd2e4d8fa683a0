//! Counters of a run, declared once: [`counters!`] makes the plain
//! counts (a summary's numbers, serialized as they are), the atomic twin
//! that an account's workers add to at once, a snapshot from one to the
//! other, and the sum of two.

/// `counters! { /// docs  pub struct Counts, shared Shared { /// docs  a, b, } }`
/// declares `Counts` (u64 fields, plus `maps { … }` of counts by name, if
/// given) with `add`, and `Shared` (the same u64 fields as atomics) with
/// `snapshot`.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, shared $shared:ident {
            $($(#[$fmeta:meta])* $field:ident,)*
        }
        $(maps {
            $($(#[$mmeta:meta])* $map:ident,)*
        })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u64,)*
            $($($(#[$mmeta])* pub $map: std::collections::BTreeMap<String, u64>,)*)?
        }

        impl $name {
            /// Adds `other`'s counts to these.
            pub fn add(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
                $($(
                    for (k, v) in &other.$map {
                        *self.$map.entry(k.clone()).or_default() += v;
                    }
                )*)?
            }
        }

        /// The counters workers add to at the same time.
        #[derive(Debug, Default)]
        pub(crate) struct $shared {
            $(pub $field: std::sync::atomic::AtomicU64,)*
        }

        impl $shared {
            /// The counts so far.
            #[allow(clippy::needless_update)]
            pub fn snapshot(&self) -> $name {
                $name {
                    $($field: self.$field.load(std::sync::atomic::Ordering::Relaxed),)*
                    ..$name::default()
                }
            }
        }
    };
}

pub(crate) use counters;

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    counters! {
        /// Test counts.
        pub struct Counts, shared Shared {
            /// Apples.
            apples,
            pears,
        }
        maps {
            by_colour,
        }
    }

    #[test]
    fn a_snapshot_and_a_sum_carry_every_counter() {
        let shared = Shared::default();
        shared.apples.fetch_add(2, Ordering::Relaxed);
        shared.pears.fetch_add(3, Ordering::Relaxed);
        let mut total = shared.snapshot();
        assert_eq!((total.apples, total.pears), (2, 3));
        let mut other = Counts {
            apples: 1,
            ..Counts::default()
        };
        other.by_colour.insert("red".into(), 4);
        total.add(&other);
        total.add(&other);
        assert_eq!((total.apples, total.pears), (4, 3));
        assert_eq!(total.by_colour["red"], 8);
    }
}
