//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per event, which
//! CloudWatch Logs turns into metrics with no API call (and no latency) in the request path.

use std::io::Write;

use serde_json::{Value, json};

const NAMESPACE: &str = "Tally";

/// Prints one EMF document: `metrics` are (name, unit, value); `dimensions` become both the
/// metric dimensions and searchable properties.
fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, &str, f64)], properties: Value) {
    let mut line = document(dimensions, metrics, properties);
    line.push('\n');
    // A metric that cannot be written is not worth failing a request over.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn document(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, f64)],
    properties: Value,
) -> String {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut document = json!({
        "_aws": {
            "Timestamp": i64::try_from(timestamp).unwrap_or(0),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit })).collect::<Vec<_>>(),
            }],
        },
    });
    if let (Some(object), Value::Object(extra)) = (document.as_object_mut(), properties) {
        for (key, value) in dimensions {
            object.insert((*key).to_owned(), json!(value));
        }
        for (name, _, value) in metrics {
            object.insert((*name).to_owned(), json!(value));
        }
        object.extend(extra);
    }
    document.to_string()
}

/// One request: count and latency by function and route; ballots accepted and rejected, and
/// rate-limited requests, as their own metrics.
pub fn request(
    function: &str,
    request_id: &str,
    method: &str,
    route: &str,
    status: u16,
    latency_ms: u64,
) {
    let mut metrics = vec![
        ("requests", "Count", 1.0),
        ("latency", "Milliseconds", latency_ms as f64),
    ];
    if route == "/v1/polls/{id}/votes" {
        metrics.push(if status == 201 {
            ("votes_accepted", "Count", 1.0)
        } else {
            ("votes_rejected", "Count", 1.0)
        });
    }
    if status == 429 {
        metrics.push(("rate_limited", "Count", 1.0));
    }
    if status >= 500 {
        metrics.push(("server_errors", "Count", 1.0));
    }
    emit(
        &[("function", function), ("route", route)],
        &metrics,
        json!({ "request_id": request_id, "method": method, "status": status }),
    );
}

/// One render message: how long it took and how far its job has come.
pub fn render(
    kind: &str,
    request_id: &str,
    job_id: &str,
    render_ms: u64,
    cards: u32,
    job_done: u32,
    job_total: u32,
) {
    emit(
        &[("function", "render"), ("kind", kind)],
        &[
            ("render_time", "Milliseconds", render_ms as f64),
            ("cards_rendered", "Count", f64::from(cards)),
        ],
        json!({ "request_id": request_id, "job_id": job_id, "job_done": job_done, "job_total": job_total }),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let line = super::document(
            &[("function", "votes"), ("route", "/v1/polls/{id}/votes")],
            &[("requests", "Count", 1.0), ("latency", "Milliseconds", 4.0)],
            json!({ "request_id": "r-1", "status": 201 }),
        );
        let doc: Value = serde_json::from_str(&line).unwrap_or_default();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Tally");
        assert_eq!(directive["Dimensions"], json!([["function", "route"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({ "Name": "latency", "Unit": "Milliseconds" })
        );
        assert_eq!(
            (
                doc["function"].as_str(),
                doc["latency"].as_f64(),
                doc["request_id"].as_str()
            ),
            (Some("votes"), Some(4.0), Some("r-1"))
        );
        assert!(
            doc["_aws"]["Timestamp"]
                .as_i64()
                .is_some_and(|t| t > 1_700_000_000_000)
        );
        assert!(!line.contains('\n'));
    }
}
