use super::wire::*;
use serde_json::value::RawValue;

/// What serde reads from the packet text: the name and the first two
/// arguments' text.
fn read_by_serde(text: &str) -> Option<(String, Option<String>, Option<String>)> {
    let arguments: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    let (event, rest) = arguments.split_first()?;
    let event: &str = serde_json::from_str(event.get()).ok()?;
    let text_of = |raw: Option<&&RawValue>| raw.map(|raw| raw.get().to_owned());
    Some((
        event.to_owned(),
        text_of(rest.first()),
        text_of(rest.get(1)),
    ))
}

#[test]
fn plain_packets_read_what_serde_reads() {
    for text in [
        r#"["message",{"t":1,"p":"xx"}]"#,
        r#"["ipaddr"]"#,
        r#" [ "syncto" , null , {"id":4} , 5 ] "#,
        r#"["register",{"uid":"u","type":0}]"#,
    ] {
        let (event, data, meta) = plain_packet(text).expect("plain");
        let read = (
            event.to_owned(),
            data.map(|d| d.text().to_owned()),
            meta.map(|m| m.text().to_owned()),
        );
        assert_eq!(Some(read), read_by_serde(text), "{text}");
    }
    for text in [
        "[]",
        r#"["m\u0065ssage",1]"#,
        r#"[3,1]"#,
        r#"["message",1,]"#,
        r#"["message",01]"#,
        r#"{"event":"message"}"#,
    ] {
        assert!(plain_packet(text).is_none(), "{text}");
    }
}
