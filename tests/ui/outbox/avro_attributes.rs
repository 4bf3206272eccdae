use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts", format = "xml")]
struct UnknownFormat {
    id: i64,
}

#[derive(Outbox)]
#[procon(topic = "accounts", avro_namespace = "com.acme", avro_name = "Account")]
struct NamesWithoutAvro {
    id: i64,
}

#[derive(Outbox)]
#[procon(topic = "accounts", format = "avro", avro_namespace = "com.9acme")]
struct BadNamespace {
    id: i64,
}

#[derive(Outbox)]
#[procon(topic = "accounts", format = "avro", avro_name = "Account-V2")]
struct BadName {
    id: i64,
}

#[derive(Outbox)]
#[procon(topic = "accounts", format = "avro")]
struct BadFieldName {
    id: i64,
    #[procon(rename = "e-mail")]
    email: String,
}

#[derive(Outbox)]
#[procon(topic = "accounts", format = "avro")]
struct Generic<T: serde::Serialize> {
    id: i64,
    value: T,
}

fn main() {}
