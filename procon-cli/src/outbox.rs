//! The outbox, for its operator: `status` and `parked list|retry|drop`.

use crate::args::{Database, ParkedAction};
use crate::output::print_json;
use crate::setup::connect;
use crate::BoxError;

/// `procon status`: the backlog and the parked events.
pub(crate) fn status(json: bool, db: Database) -> Result<(), BoxError> {
    let mut conn = connect(db)?;
    let backlog = procon::backlog(&mut conn)?;
    let parked = procon::parked_rows(&mut conn)?;
    if json {
        return print_json(&serde_json::json!({ "outbox": backlog, "parked": parked }));
    }
    match backlog.oldest_age_seconds {
        Some(age) => println!("{} events waiting, oldest {age:.1} s old", backlog.waiting),
        None => println!("outbox empty"),
    }
    if !parked.is_empty() {
        println!(
            "{} events parked (the broker rejected them; see `procon parked list`):",
            parked.len()
        );
        for row in &parked {
            print_parked(row);
        }
    }
    Ok(())
}

/// `procon parked list|retry|drop`.
pub(crate) fn parked(json: bool, db: Database, action: ParkedAction) -> Result<(), BoxError> {
    let mut conn = connect(db)?;
    match action {
        ParkedAction::List => {
            let parked = procon::parked_rows(&mut conn)?;
            if json {
                return print_json(&parked);
            }
            if parked.is_empty() {
                println!("no parked event");
            }
            for row in &parked {
                print_parked(row);
            }
        }
        ParkedAction::Retry { id } => {
            if !procon::retry_parked(&mut conn, id)? {
                return Err(format!("no parked event {id}: see `procon parked list`").into());
            }
            println!("parked event {id} is back in the outbox; the relay publishes it next");
        }
        ParkedAction::Drop { id } => {
            if !procon::drop_parked(&mut conn, id)? {
                return Err(format!("no parked event {id}: see `procon parked list`").into());
            }
            println!("parked event {id} dropped; the later events of its key flow again");
        }
    }
    Ok(())
}

fn print_parked(row: &procon::ParkedRow) {
    println!(
        "{} {} {}[key {}] event {} after {} attempts, parked {}, {} events of its key waiting: {}",
        row.id,
        row.event_name,
        row.topic,
        row.key,
        row.event_id,
        row.attempts,
        row.parked_at,
        row.waiting_behind,
        row.error
    );
}
