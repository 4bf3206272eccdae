use procon::Outbox;

struct Money(i64);

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

#[derive(Outbox)]
#[procon(topic = "accounts", format = "avro")]
struct Account {
    id: i64,
    balance: Money,
}

fn main() {}
