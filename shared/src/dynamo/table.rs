//! The table's definition, for the local engines (dev server, tests, emulators). On AWS the
//! same shape is declared in `template.yaml`; keep the two in step.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

use super::keys::{GSI1, GSI1_PK, GSI1_SK, PK, SK, TTL};

/// The table's stream: new images only, which is all the count function reads (the ballot as
/// written). The template declares the same `StreamViewType`.
fn stream() -> Result<StreamSpecification, String> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(|e| e.to_string())
}

/// Creates the table (with its owner index, TTL and stream) unless it exists, and turns the
/// stream on for a table made before it had one (a dev server's older data folder). Idempotent,
/// so every start of the dev server may call it.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), String> {
    match client.describe_table().table_name(table).send().await {
        Ok(described) => {
            let streaming = described
                .table
                .and_then(|t| t.stream_specification)
                .is_some_and(|s| s.stream_enabled);
            if streaming {
                return Ok(());
            }
            client
                .update_table()
                .table_name(table)
                .stream_specification(stream()?)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "enable the stream of {table}: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                    )
                })?;
            return Ok(());
        }
        Err(e) if e.code() == Some("ResourceNotFoundException") => {}
        Err(e) => {
            return Err(format!(
                "describe table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            ));
        }
    }
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1_PK, KeyType::Hash).map_err(|e| e.to_string())?)
        .key_schema(key(GSI1_SK, KeyType::Range).map_err(|e| e.to_string())?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash).map_err(|e| e.to_string())?)
        .key_schema(key(SK, KeyType::Range).map_err(|e| e.to_string())?)
        .global_secondary_indexes(index)
        .stream_specification(stream()?);
    for name in [PK, SK, GSI1_PK, GSI1_SK] {
        create = create.attribute_definitions(attribute(name).map_err(|e| e.to_string())?);
    }
    match create.send().await {
        Ok(_) => {}
        // Another process created it between our describe and create: that is success.
        Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
        Err(e) => {
            return Err(format!(
                "create table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            ));
        }
    }
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(TTL)
        .enabled(true)
        .build()
        .map_err(|e| e.to_string())?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| {
            format!(
                "enable TTL on {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}
