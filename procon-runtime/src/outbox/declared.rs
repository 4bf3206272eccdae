//! The topics a service declares it publishes to: every `#[derive(Outbox)]` model with a fixed
//! `topic` declares its own, [`declare_topic!`](crate::declare_topic) declares one by hand (a
//! model routing topics at run time), and `relay.topics` declares the keys of its map. The
//! relay warns about (or refuses, `relay.undeclared_topics`) an event whose topic none of them
//! names: a typo would otherwise silently become a new topic on a broker that auto-creates
//! topics.

use std::collections::BTreeSet;

/// One declared topic, collected from the whole program at start (`inventory`).
#[derive(Debug)]
pub struct DeclaredTopic {
    /// The topic as models name it (before `relay.topics` maps it).
    pub topic: &'static str,
}

impl DeclaredTopic {
    /// A declaration of `topic`.
    pub const fn new(topic: &'static str) -> Self {
        DeclaredTopic { topic }
    }
}

inventory::collect!(DeclaredTopic);

/// Declares that this program publishes to `topic` (a model whose `Outbox::topic` is chosen
/// at run time names its possible topics this way). `#[derive(Outbox)]` with a fixed `topic`
/// writes this itself.
///
/// ```
/// procon_runtime::declare_topic!("orders");
/// ```
#[macro_export]
macro_rules! declare_topic {
    ($topic:expr) => {
        $crate::__inventory::submit! {
            $crate::outbox::declared::DeclaredTopic::new($topic)
        }
    };
}

/// Every topic declared in this program, by models or [`declare_topic!`](crate::declare_topic).
pub fn declared_topics() -> BTreeSet<&'static str> {
    inventory::iter::<DeclaredTopic>
        .into_iter()
        .map(|declared| declared.topic)
        .collect()
}
