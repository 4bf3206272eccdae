//! Dead-letter topics (Kafka), for their operator: `dlq list|show|redrive`.

use std::time::Duration;

use crate::args::DlqAction;
use crate::output::{bar, print_json};
use crate::setup::{connect, kafka_settings};
use crate::BoxError;

/// How long reading a dead-letter topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// `procon dlq --topic T ...`.
pub(crate) fn run(
    json: bool,
    topic: &str,
    brokers: Option<String>,
    action: DlqAction,
) -> Result<(), BoxError> {
    let settings = kafka_settings(brokers)?;
    let reading = bar(json, 0, &format!("reading {topic}"));
    let letters =
        procon::dead_letters_with_progress(&settings, topic, READ_TIMEOUT, &mut |read, total| {
            reading.set_length(total);
            reading.set_position(read);
        })
        .map_err(|e| format!("cannot read {topic}: {e} (are PROCON_BROKERS, or PROCON_TRANSPORT=kinesis and PROCON_KINESIS_*, right?)"));
    reading.finish_and_clear();
    let letters = letters?;
    let find = |place: &str| -> Result<procon::DeadLetter, BoxError> {
        let (partition, position) = letter_place(place)?;
        letters
            .iter()
            .find(|l| l.partition == partition && l.position == position)
            .cloned()
            .ok_or_else(|| {
                format!("{topic} has no letter at {place}: see `procon dlq list`").into()
            })
    };
    match action {
        DlqAction::List => {
            if json {
                return print_json(&letters);
            }
            if letters.is_empty() {
                println!("{topic} holds no letter");
            }
            for l in &letters {
                println!(
                    "{}:{} {} from {} (key {}): {}",
                    l.partition,
                    l.position,
                    l.event().unwrap_or("?"),
                    l.failed_topic().unwrap_or("?"),
                    l.key.as_deref().unwrap_or("-"),
                    l.error().unwrap_or("?")
                );
            }
            Ok(())
        }
        DlqAction::Show { letter } => {
            let letter = find(&letter)?;
            if json {
                return print_json(&letter);
            }
            for (name, value) in &letter.headers {
                println!("{name}: {value}");
            }
            println!("\n{}", letter.payload);
            Ok(())
        }
        DlqAction::Redrive {
            db,
            all,
            letters: chosen,
        } => {
            let picked: Vec<procon::DeadLetter> = if all {
                letters.clone()
            } else if chosen.is_empty() {
                return Err("say which letters: --all, or <partition>:<position>...".into());
            } else {
                chosen
                    .iter()
                    .map(|place| find(place))
                    .collect::<Result<_, _>>()?
            };
            let mut conn = connect(db)?;
            let sent = procon::redrive(&mut conn, &picked)?;
            println!(
                "{sent} letters written to the outbox; the relay publishes them in this order"
            );
            Ok(())
        }
    }
}

/// `<partition>:<position>` of a letter.
fn letter_place(text: &str) -> Result<(i32, procon::Position), BoxError> {
    let (partition, position) = text
        .split_once(':')
        .ok_or_else(|| format!("{text}: expected <partition>:<position>, e.g. 0:42"))?;
    Ok((partition.parse()?, position.parse()?))
}
