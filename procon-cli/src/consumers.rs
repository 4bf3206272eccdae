//! Consumer groups, for their operator: `stopped`, `resume` and `replay`.

use crate::args::Database;
use crate::output::{print_json, spinner};
use crate::setup::{connect, kafka_settings};
use crate::BoxError;

/// `procon stopped`: partitions and keys stopped on a failed event.
pub(crate) fn stopped(json: bool, db: Database, group: Option<String>) -> Result<(), BoxError> {
    let mut conn = connect(db)?;
    let stopped = procon::stopped_partitions(&mut conn, group.as_deref())?;
    if json {
        return print_json(&stopped);
    }
    if stopped.is_empty() {
        println!("no stopped partition");
    }
    for s in stopped {
        let lane = if s.lane.is_empty() {
            "whole partition"
        } else {
            s.lane.as_str()
        };
        println!(
            "{} {}[{}] ({lane})@{} event {} ({}) after {} attempts since {}: {}",
            s.group_id,
            s.topic,
            s.partition,
            s.position,
            s.event.as_deref().unwrap_or("?"),
            s.event_id
                .map_or_else(|| "no id".to_owned(), |id| id.to_string()),
            s.attempts,
            s.stopped_at,
            s.error
        );
    }
    Ok(())
}

/// `procon resume`: `skip_reset` is (`--skip`, `--reset`).
pub(crate) fn resume(
    db: Database,
    group: &str,
    topic: &str,
    partition: i32,
    skip_reset: (bool, bool),
    lane: Option<String>,
) -> Result<(), BoxError> {
    let (skip, reset) = skip_reset;
    let mut conn = connect(db)?;
    let how = match (skip, reset) {
        (true, _) => procon::Resume::Skip,
        (_, true) => procon::Resume::Reset,
        _ => procon::Resume::Retry,
    };
    let resumed = match &lane {
        Some(lane) => procon::resume_lane(&mut conn, group, topic, partition, lane, how)?,
        None => procon::resume_partition(&mut conn, group, topic, partition, how)?,
    };
    if resumed.is_empty() {
        return Err(format!(
            "{group} has no stop on {topic}[{partition}]{}: see `procon stopped` (the topic is the physical name)",
            lane.map(|l| format!(" lane {l}")).unwrap_or_default()
        )
        .into());
    }
    for s in resumed {
        let what = match (how, s.reset_to) {
            (procon::Resume::Skip, _) => "skipped",
            (procon::Resume::Reset, Some(_)) => "reset",
            _ => "will be retried",
        };
        let lane = if s.lane.is_empty() {
            "whole partition"
        } else {
            s.lane.as_str()
        };
        println!(
            "resumed {topic}[{partition}] ({lane}): position {} {what}",
            s.position
        );
    }
    Ok(())
}

/// What `procon replay` was asked.
pub(crate) struct ReplayRequest {
    pub(crate) group: String,
    pub(crate) topic: String,
    /// `earliest`, an RFC 3339 time or a position.
    pub(crate) to: String,
    /// Bootstrap servers over PROCON_BROKERS (a time is looked up on the broker).
    pub(crate) brokers: Option<String>,
    pub(crate) dry_run: bool,
    pub(crate) publish: bool,
}

/// How long looking up a time's positions may take.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `procon replay`.
pub(crate) fn replay(json: bool, db: Database, request: ReplayRequest) -> Result<(), BoxError> {
    let ReplayRequest {
        group,
        topic,
        to,
        brokers,
        dry_run,
        publish,
    } = request;
    let from = replay_from(json, &to, &topic, brokers)?;
    let mut conn = connect(db)?;
    let plan = procon::replay(&mut conn, &group, &topic, from, publish, dry_run)?;
    if json {
        return print_json(&plan);
    }
    for step in &plan {
        println!(
            "{topic}[{}]: events below {} applied again, from {}",
            step.partition,
            step.from,
            step.to
                .map_or("the oldest one".to_owned(), |p| format!("position {p}"))
        );
    }
    match (plan.is_empty(), dry_run) {
        (true, _) => println!("nothing to replay: every partition is stored before that point"),
        (false, true) => println!("dry run: nothing changed"),
        (false, false) => println!(
            "replay recorded{}; {group}'s consumers apply the events again (running ones within a second)",
            if publish {
                ""
            } else {
                " (handlers publish nothing while replaying)"
            }
        ),
    }
    Ok(())
}

/// Reads `--to`; a time's positions are asked of the broker (with a spinner meanwhile).
fn replay_from(
    json: bool,
    to: &str,
    topic: &str,
    brokers: Option<String>,
) -> Result<procon::ReplayFrom, BoxError> {
    let target: procon::ReplayTarget = to.parse().map_err(|e| format!("--to {e}"))?;
    target.resolve(|at| -> Result<_, BoxError> {
        let settings = kafka_settings(brokers)?;
        let looking = spinner(json, &format!("finding {topic}'s positions at {to}"));
        let found = procon::replay_positions_at(&settings, topic, at, LOOKUP_TIMEOUT);
        looking.finish_and_clear();
        found.map_err(|e| {
            format!(
                "cannot find {topic}'s positions at {to}: {e} (are PROCON_BROKERS, or \
                 PROCON_TRANSPORT=kinesis and PROCON_KINESIS_*, right?)"
            )
            .into()
        })
    })
}
