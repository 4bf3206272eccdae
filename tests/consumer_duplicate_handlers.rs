//! Two handlers for one event are refused at start-up, naming both.

use procon::{Event, EventHandler, HandlerContext, HandlerError};

struct First;
impl EventHandler for First {
    const TOPIC: &'static str = "orders";
    const EVENT: &'static str = "order.created";
    type Payload = serde_json::Value;
    fn handle(_: &mut HandlerContext<'_>, _: Event<serde_json::Value>) -> Result<(), HandlerError> {
        Ok(())
    }
}
procon::register_handler!(First);

struct Second;
impl EventHandler for Second {
    const TOPIC: &'static str = "orders";
    const EVENT: &'static str = "order.created";
    type Payload = serde_json::Value;
    fn handle(_: &mut HandlerContext<'_>, _: Event<serde_json::Value>) -> Result<(), HandlerError> {
        Ok(())
    }
}
procon::register_handler!(Second);

#[tokio::test]
async fn two_handlers_for_one_event_are_a_start_error() {
    let config = procon::Config::new("postgres://postgres@127.0.0.1/test", "127.0.0.1:9092");
    let err = procon::start(config).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, procon::StartError::Consumer(_)), "{err:?}");
    assert!(
        message.contains("order.created")
            && message.contains("First")
            && message.contains("Second"),
        "{message}"
    );
}
