//! The admin page, rendered on the server from an [`Overview`]. Pure: the handler gathers the
//! overview and writes what this returns. Every value is HTML-escaped.

use std::fmt::Write as _;

use crate::consumer::{DeadLetter, StoppedPartition};
use crate::outbox::parked::{Backlog, ParkedRow};

/// A consumer partition on the page: (topic, partition, messages in flight, lag when known).
pub(crate) type PartitionRow = (String, i32, usize, Option<u64>);

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overview {
    /// The service (consumer group) name.
    pub(crate) service: String,
    /// The outbox backlog (`None` when the database did not answer).
    pub(crate) backlog: Option<Backlog>,
    /// Relay: `Some((connected, shards held))` when it runs here.
    pub(crate) relay: Option<(bool, usize)>,
    /// Consumer partitions as (topic, partition, in flight, lag when known), when it runs here.
    pub(crate) partitions: Option<Vec<PartitionRow>>,
    /// Keys and partitions retrying a failing message here: (where, lane, attempts, error).
    pub(crate) stalled: Vec<(String, String, u32, String)>,
    /// Stops of this group, from the database.
    pub(crate) stopped: Vec<StoppedPartition>,
    /// Parked outbox rows.
    pub(crate) parked: Vec<ParkedRow>,
    /// What the database said when it failed.
    pub(crate) database_error: Option<String>,
    /// Each dead-letter topic of the consumed topics with its letters, or why it was not read.
    pub(crate) dead_letters: Vec<(String, Result<Vec<DeadLetter>, String>)>,
    /// The topics this service consumes (physical names): what the replay form offers.
    pub(crate) replayable: Vec<String>,
}

/// `text` with `& < > " '` escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2733}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;margin-top:.5rem}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:#f3f5f7}.bad{color:#b42318}.ok{color:#067647}.notice{background:#fff4d6;padding:.5rem 1rem;border-radius:4px}\
.cards{display:flex;gap:1rem}.card{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;min-width:10rem}\
.card b{display:block;font-size:1.3rem}form{display:inline}button{margin-right:.3rem}";

/// The page; `notice` is the outcome of the last action, `signed_in` shows the actions.
pub(crate) fn render(overview: &Overview, notice: Option<&str>, signed_in: bool) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>procon · {service}</title>\
         <style>{STYLE}</style></head><body><h1>procon · {service}</h1>",
        service = escape(&overview.service)
    );
    if let Some(notice) = notice {
        let _ = write!(
            html,
            "<p class=\"notice\" id=\"notice\">{}</p>",
            escape(notice)
        );
    }
    if let Some(error) = &overview.database_error {
        let _ = write!(html, "<p class=\"bad\">database: {}</p>", escape(error));
    }
    cards(&mut html, overview);
    partitions(&mut html, overview);
    stops(&mut html, overview, signed_in);
    parked(&mut html, overview, signed_in);
    dead_letters(&mut html, overview, signed_in);
    replay(&mut html, overview, signed_in);
    if !signed_in {
        html.push_str(
            "<h2>Sign in</h2><p>Actions need the admin token (<code>PROCON_ADMIN_TOKEN</code>).</p>\
             <form method=\"post\" action=\"/login\"><input type=\"password\" name=\"token\" \
             placeholder=\"admin token\" aria-label=\"admin token\"> <button>Sign in</button></form>",
        );
    }
    html.push_str("</body></html>");
    html
}

fn cards(html: &mut String, overview: &Overview) {
    html.push_str("<div class=\"cards\">");
    match &overview.backlog {
        Some(backlog) => {
            let age = backlog
                .oldest_age_seconds
                .map_or("–".to_owned(), |a| format!("{a:.1} s"));
            let _ = write!(
                html,
                "<div class=\"card\">outbox backlog<b id=\"backlog\">{}</b>oldest {age}</div>\
                 <div class=\"card\">parked events<b>{}</b></div>",
                backlog.waiting, backlog.parked
            );
        }
        None => html.push_str("<div class=\"card\">outbox backlog<b>?</b></div>"),
    }
    let relay = match overview.relay {
        Some((true, 0)) => "standby (no shard)".to_owned(),
        Some((true, shards)) => format!("publishing ({shards} shard{})", plural(shards)),
        Some((false, _)) => "<span class=\"bad\">disconnected</span>".to_owned(),
        None => "not running here".to_owned(),
    };
    let _ = write!(html, "<div class=\"card\">relay<b>{relay}</b></div>");
    let stopped = overview.stopped.len();
    let _ = write!(
        html,
        "<div class=\"card\">stopped<b class=\"{}\">{stopped}</b>keys or partitions</div></div>",
        if stopped > 0 { "bad" } else { "ok" }
    );
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn partitions(html: &mut String, overview: &Overview) {
    html.push_str("<h2>Consumer</h2>");
    let Some(partitions) = &overview.partitions else {
        html.push_str("<p>No consumer runs in this process.</p>");
        return;
    };
    html.push_str("<table><tr><th>topic</th><th>partition</th><th>in flight</th><th>lag</th></tr>");
    for (topic, partition, in_flight, lag) in partitions {
        let lag = lag.map_or("–".to_owned(), |l| l.to_string());
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{partition}</td><td>{in_flight}</td><td>{lag}</td></tr>",
            escape(topic)
        );
    }
    html.push_str("</table>");
    if !overview.stalled.is_empty() {
        html.push_str(
            "<h2>Retrying</h2><table><tr><th>where</th><th>lane</th><th>attempts</th><th>error</th></tr>",
        );
        for (at, lane, attempts, error) in &overview.stalled {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{attempts}</td><td>{}</td></tr>",
                escape(at),
                escape(lane),
                escape(error)
            );
        }
        html.push_str("</table>");
    }
}

fn stops(html: &mut String, overview: &Overview, signed_in: bool) {
    html.push_str("<h2>Stopped</h2>");
    if overview.stopped.is_empty() {
        html.push_str("<p id=\"no-stops\">Nothing is stopped.</p>");
        return;
    }
    html.push_str(
        "<table id=\"stops\"><tr><th>where</th><th>lane</th><th>event</th><th>attempts</th>\
         <th>error</th><th></th></tr>",
    );
    for stop in &overview.stopped {
        let lane = if stop.lane.is_empty() {
            "whole partition"
        } else {
            &stop.lane
        };
        let _ = write!(
            html,
            "<tr><td>{}[{}]@{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>",
            escape(&stop.topic),
            stop.partition,
            stop.position,
            escape(lane),
            escape(stop.event.as_deref().unwrap_or("?")),
            stop.attempts,
            escape(&stop.error)
        );
        if signed_in {
            let hows: &[(&str, &str)] = if stop.reset_to.is_some() {
                &[("reset", "Accept the proposed position")]
            } else {
                &[("retry", "Retry"), ("skip", "Skip")]
            };
            for (how, label) in hows {
                let _ = write!(
                    html,
                    "<form method=\"post\" action=\"/actions/resume\">\
                     <input type=\"hidden\" name=\"topic\" value=\"{}\">\
                     <input type=\"hidden\" name=\"partition\" value=\"{}\">\
                     <input type=\"hidden\" name=\"lane\" value=\"{}\">\
                     <input type=\"hidden\" name=\"how\" value=\"{how}\">\
                     <button>{label}</button></form>",
                    escape(&stop.topic),
                    stop.partition,
                    escape(&stop.lane)
                );
            }
        }
        html.push_str("</td></tr>");
    }
    html.push_str("</table>");
}

fn parked(html: &mut String, overview: &Overview, signed_in: bool) {
    html.push_str("<h2>Parked events</h2>");
    if overview.parked.is_empty() {
        html.push_str("<p>No parked event.</p>");
        return;
    }
    html.push_str(
        "<table><tr><th>id</th><th>topic</th><th>key</th><th>event</th><th>waiting behind</th>\
         <th>error</th><th></th></tr>",
    );
    for row in &overview.parked {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>",
            row.id,
            escape(&row.topic),
            escape(&row.key),
            escape(&row.event_name),
            row.waiting_behind,
            escape(&row.error)
        );
        if signed_in {
            for (action, label) in [("retry", "Retry"), ("drop", "Drop")] {
                let _ = write!(
                    html,
                    "<form method=\"post\" action=\"/actions/parked\">\
                     <input type=\"hidden\" name=\"id\" value=\"{}\">\
                     <input type=\"hidden\" name=\"action\" value=\"{action}\">\
                     <button>{label}</button></form>",
                    row.id
                );
            }
        }
        html.push_str("</td></tr>");
    }
    html.push_str("</table>");
}

/// The replay form (KaufmannEx's reinit): the group's positions of a topic move back and its
/// events are applied once more; the running consumers follow without a restart.
fn replay(html: &mut String, overview: &Overview, signed_in: bool) {
    if overview.replayable.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Replay</h2><p>Apply a topic's events again, each once more: the group's positions \
         move back and its consumers follow (same as <code>procon replay</code>).</p>",
    );
    if !signed_in {
        html.push_str("<p>Sign in to replay.</p>");
        return;
    }
    html.push_str(
        "<form method=\"post\" action=\"/actions/replay\" id=\"replay\">\
         <label>topic <select name=\"topic\">",
    );
    for topic in &overview.replayable {
        let topic = escape(topic);
        let _ = write!(html, "<option value=\"{topic}\">{topic}</option>");
    }
    html.push_str(
        "</select></label> <label>from <input name=\"to\" value=\"earliest\" \
         placeholder=\"earliest, 2026-12-01T09:30:00Z or a position\"></label> \
         <label><input type=\"checkbox\" name=\"dry_run\" value=\"on\" checked> dry run \
         (show what would move)</label> <label><input type=\"checkbox\" name=\"no_publish\" \
         value=\"on\"> publish nothing the handlers emit while replaying</label> \
         <button>Replay</button></form>",
    );
}

fn redrive_form(html: &mut String, dlq: &str, letter: &str, label: &str) {
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/actions/redrive\">\
         <input type=\"hidden\" name=\"dlq\" value=\"{}\">\
         <input type=\"hidden\" name=\"letter\" value=\"{}\">\
         <button>{label}</button></form>",
        escape(dlq),
        escape(letter)
    );
}

fn dead_letters(html: &mut String, overview: &Overview, signed_in: bool) {
    if overview.dead_letters.is_empty() {
        return;
    }
    html.push_str("<h2>Dead letters</h2>");
    for (dlq, letters) in &overview.dead_letters {
        let _ = write!(html, "<h3>{}</h3>", escape(dlq));
        let letters = match letters {
            Ok(letters) if letters.is_empty() => {
                html.push_str("<p>No letter.</p>");
                continue;
            }
            Ok(letters) => letters,
            Err(error) => {
                let _ = write!(html, "<p class=\"bad\">not read: {}</p>", escape(error));
                continue;
            }
        };
        if signed_in {
            redrive_form(html, dlq, "all", "Redrive all, in order");
        }
        html.push_str(
            "<table class=\"letters\"><tr><th>letter</th><th>event</th><th>failed on</th><th>key</th>\
             <th>attempts</th><th>error</th><th></th></tr>",
        );
        for letter in letters {
            let place = format!("{}:{}", letter.partition, letter.position);
            let _ = write!(
                html,
                "<tr><td>{place}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>",
                escape(letter.event().unwrap_or("?")),
                escape(letter.failed_topic().unwrap_or("?")),
                escape(letter.key.as_deref().unwrap_or("-")),
                escape(letter.header("procon-dlq-attempts").unwrap_or("?")),
                escape(letter.error().unwrap_or("?"))
            );
            if signed_in {
                redrive_form(html, dlq, &place, "Redrive");
            }
            html.push_str("</td></tr>");
        }
        html.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Position;

    fn stop() -> StoppedPartition {
        StoppedPartition {
            group_id: "billing".into(),
            topic: "accounts".into(),
            partition: 2,
            position: Position::offset(41),
            event_id: None,
            event: Some("account.created".into()),
            error: "decode failed: <script>alert(1)</script>".into(),
            attempts: 3,
            stopped_at: chrono::Utc::now(),
            lane: "key:7".into(),
            reset_to: None,
        }
    }

    #[test]
    fn a_stop_shows_its_error_escaped_and_its_actions_only_when_signed_in() {
        let overview = Overview {
            service: "billing".into(),
            stopped: vec![stop()],
            ..Overview::default()
        };
        let anonymous = render(&overview, None, false);
        assert!(anonymous.contains("accounts[2]@41"), "{anonymous}");
        assert!(anonymous.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!anonymous.contains("<script>"));
        assert!(!anonymous.contains("/actions/resume"));
        assert!(anonymous.contains("action=\"/login\""));
        let signed_in = render(&overview, Some("resumed"), true);
        assert!(signed_in.contains("name=\"how\" value=\"skip\""));
        assert!(signed_in.contains("name=\"lane\" value=\"key:7\""));
        assert!(signed_in.contains("id=\"notice\">resumed<"));
        assert!(!signed_in.contains("action=\"/login\""));
    }

    #[test]
    fn the_replay_form_lists_the_consumed_topics_escaped_and_only_when_signed_in() {
        let overview = Overview {
            service: "billing".into(),
            replayable: vec!["accounts\"><b>".into(), "orders".into()],
            ..Overview::default()
        };
        let anonymous = render(&overview, None, false);
        assert!(anonymous.contains("<h2>Replay</h2>"));
        assert!(!anonymous.contains("/actions/replay"));
        let signed_in = render(&overview, None, true);
        assert!(signed_in.contains("action=\"/actions/replay\""));
        assert!(signed_in.contains("<option value=\"orders\">orders</option>"));
        assert!(signed_in.contains("accounts&quot;&gt;&lt;b&gt;"));
        assert!(!signed_in.contains("accounts\"><b>"));
        assert!(signed_in.contains("name=\"dry_run\" value=\"on\" checked"));
        let consuming_nothing = render(&Overview::default(), None, true);
        assert!(!consuming_nothing.contains("/actions/replay"));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
